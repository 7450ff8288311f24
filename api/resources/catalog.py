"""Content items and their own reward plans."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal, require
from api.extensions import db
from api.schemas.catalog import Content, ContentCreate, Plan, PlanIn
from royalties.services import catalog

blp = Blueprint("content", __name__, url_prefix="/v1", description="Content and reward plans")


@blp.route("/content")
class ContentCollection(MethodView):
    @require("artist")
    @blp.arguments(ContentCreate())
    @blp.response(201, Content)
    def post(self, body: dict[str, Any]) -> Any:
        """Publish a content item (artist)"""
        artist_id = current_principal().owner_id
        assert artist_id is not None
        return catalog.create_content(db.session, artist_id=artist_id, **body)


@blp.route("/content/<content_id>")
class ContentItem(MethodView):
    @require("admin", "artist", "storefront", "fan")
    @blp.response(200, Content)
    def get(self, content_id: str) -> Any:
        """A content item (any authenticated caller)"""
        return catalog.get_content(db.session, content_id)


@blp.route("/content/<content_id>/reward-plan")
class ContentPlan(MethodView):
    @require("admin", "artist")
    @blp.response(200, Plan)
    def get(self, content_id: str) -> Any:
        """The plan that applies to this item (its own, else its artist's)"""
        content = catalog.get_content(db.session, content_id)
        _check_owner(content.artist_id)
        return catalog.plan_for(db.session, artist_id=content.artist_id, content_id=content_id)

    @require("artist", "admin")
    @blp.arguments(PlanIn())
    @blp.response(200, Plan)
    def put(self, body: dict[str, Any], content_id: str) -> Any:
        """Set this item's own reward plan (owning artist); overrides the artist's plan"""
        principal = current_principal()
        return catalog.set_content_plan(
            db.session,
            acting_artist_id=None if principal.role == "admin" else principal.owner_id,
            content_id=content_id,
            level_rates_bps=body["level_rates_bps"],
            hold_days=body["hold_days"],
        )


def _check_owner(artist_id: str) -> None:
    from api.auth import own

    own(artist_id, what="content")
