"""Artists and storefronts (created by the platform admin)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import own, require
from api.extensions import db
from api.schemas.accounts import ArtistCreate, Created, StorefrontCreate
from api.schemas.catalog import Plan, PlanIn
from royalties.services import accounts, catalog

blp = Blueprint("accounts", __name__, url_prefix="/v1", description="Artists and storefronts")


@blp.route("/artists")
class Artists(MethodView):
    @require("admin")
    @blp.arguments(ArtistCreate())
    @blp.response(201, Created)
    def post(self, body: dict[str, Any]) -> accounts.Created:
        """Create an artist (admin); returns its API key once"""
        return accounts.create_artist(db.session, name=body["name"], email=body["email"])


@blp.route("/storefronts")
class Storefronts(MethodView):
    @require("admin")
    @blp.arguments(StorefrontCreate())
    @blp.response(201, Created)
    def post(self, body: dict[str, Any]) -> accounts.Created:
        """Create a storefront (admin); returns its API key once"""
        return accounts.create_storefront(db.session, name=body["name"], base_url=body["base_url"])


@blp.route("/artists/<artist_id>/reward-plan")
class ArtistPlan(MethodView):
    @require("admin", "artist")
    @blp.response(200, Plan)
    def get(self, artist_id: str) -> Any:
        """The artist's current reward plan"""
        own(artist_id, what="artist")
        return catalog.plan_for(db.session, artist_id=artist_id, content_id=None)

    @require("artist", "admin")
    @blp.arguments(PlanIn())
    @blp.response(200, Plan)
    def put(self, body: dict[str, Any], artist_id: str) -> Any:
        """Set the artist's reward plan (a new version; sales keep the version they used)"""
        own(artist_id, what="artist")
        return catalog.set_artist_plan(
            db.session,
            artist_id=artist_id,
            level_rates_bps=body["level_rates_bps"],
            hold_days=body["hold_days"],
        )
