"""Artists and storefronts (created by the platform admin), and artists' invitations to
the dashboard by email."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import actor, own, require
from api.extensions import db
from api.schemas.accounts import (
    ArtistCreate,
    Created,
    InvitationIn,
    InvitationOut,
    StorefrontCreate,
)
from api.schemas.catalog import Plan, PlanIn
from api.web.mail import INVITE_SUBJECT, send_invitation
from royalties.services import accounts, catalog

blp = Blueprint("accounts", __name__, url_prefix="/v1", description="Artists and storefronts")


@blp.route("/artists")
class Artists(MethodView):
    @require("admin")
    @blp.arguments(ArtistCreate())
    @blp.response(201, Created)
    def post(self, body: dict[str, Any]) -> accounts.Created:
        """Create an artist (admin); returns its API key once"""
        return accounts.create_artist(
            db.session, name=body["name"], email=body["email"], actor=actor()
        )


@blp.route("/artists/<artist_id>/invitation")
class ArtistInvitation(MethodView):
    @require("admin")
    @blp.arguments(InvitationIn(), required=False)
    @blp.response(202, InvitationOut)
    def post(self, body: dict[str, Any] | None, artist_id: str) -> dict[str, Any]:
        """Email the artist an invitation to the dashboard (admin), with a single-use link

        With `email`, the artist's address is set (or changed) first, as at creation: 409
        when another artist uses it. The link signs the artist in once, within
        `INVITE_LINK_HOURS` (72 by default). 202: the mail is queued; the answer says
        where it went and until when the link works, never the link itself."""
        invitation = accounts.invite_artist(
            db.session,
            artist_id=artist_id,
            email=(body or {}).get("email"),
            link_ttl=invite_ttl(),
            actor=actor(),
        )
        send_invitation(invitation)
        return {
            "artist_id": invitation.artist_id,
            "email": invitation.email,
            "subject": INVITE_SUBJECT,
            "expires_at": invitation.expires_at,
        }


def invite_ttl() -> timedelta:
    return timedelta(hours=current_app.config["INVITE_LINK_HOURS"])


@blp.route("/storefronts")
class Storefronts(MethodView):
    @require("admin")
    @blp.arguments(StorefrontCreate())
    @blp.response(201, Created)
    def post(self, body: dict[str, Any]) -> accounts.Created:
        """Create a storefront (admin); returns its API key once"""
        return accounts.create_storefront(
            db.session, name=body["name"], base_url=body["base_url"], actor=actor()
        )


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
