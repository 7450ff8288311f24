"""API keys: rotate your own, and (admin) list and revoke anyone's."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import actor, current_principal, require
from api.extensions import db
from api.schemas.keys import Key, KeyPage, KeyQuery, KeyRotated
from royalties.models import ApiKey
from royalties.services import keys
from royalties.services.keys import Rotated

blp = Blueprint("keys", __name__, url_prefix="/v1", description="API keys")


@blp.route("/keys")
class Keys(MethodView):
    @require("admin")
    @blp.arguments(KeyQuery(), location="query")
    @blp.response(200, KeyPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """API keys, newest first, revoked ones included (admin); never the keys themselves"""
        page = keys.list_keys(
            db.session, owner_id=query["owner_id"], limit=query["limit"], cursor=query["cursor"]
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("/keys/rotate")
class KeyRotation(MethodView):
    @require("admin", "artist", "storefront", "fan")
    @blp.response(201, KeyRotated)
    def post(self) -> Rotated:
        """Replace the calling key (any role) with a new one; the old one stops at once"""
        return keys.rotate_key(db.session, key_id=current_principal().key_id, actor=actor())


@blp.route("/keys/<key_id>/revoke")
class KeyRevocation(MethodView):
    @require("admin")
    @blp.response(200, Key)
    def post(self, key_id: str) -> ApiKey:
        """Revoke a key at once (admin); revoking a revoked key is a no-op"""
        return keys.revoke_key(db.session, key_id=key_id, actor=actor())
