"""The operator's audit log: who did what, to what, when (admin)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import require
from api.extensions import db
from api.schemas.audit import AuditPage, AuditQuery
from royalties import audit
from royalties.models import OperatorAction

blp = Blueprint("audit", __name__, url_prefix="/v1", description="Operator audit log")


def shown(row: OperatorAction) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actor": {
            "key_id": row.actor_key_id,
            "link_id": row.actor_link_id,
            "role": row.actor_role,
            "owner_id": row.actor_owner_id,
        },
        "action": row.action,
        "target_id": row.target_id,
        "detail": row.detail,
    }


@blp.route("/audit-log")
class AuditLog(MethodView):
    @require("admin")
    @blp.arguments(AuditQuery(), location="query")
    @blp.response(200, AuditPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Operator actions, newest first (admin): who acted, what, when, on what

        Each row was written in the transaction of the action it records, so a refused
        request has none. Filter by `action` or by `actor_key_id`."""
        page = audit.entries(
            db.session,
            action=query["action"],
            actor_key_id=query["actor_key_id"],
            limit=query["limit"],
            cursor=query["cursor"],
        )
        return {"items": [shown(row) for row in page.items], "next_cursor": page.next_cursor}
