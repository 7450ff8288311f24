"""The operator's audit log in the dashboard: who did what, to what, when, newest first
(the rows ``GET /v1/audit-log`` answers)."""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from api.extensions import db
from api.web import signin
from api.web.views import bp
from royalties import audit
from royalties.errors import Forbidden

PER_PAGE = 50


@bp.get("/admin/audit")
@signin.signed_in
def admin_audit() -> Any:
    if signin.viewer().role != "admin":
        raise Forbidden("the audit log is the operator's")
    action = request.args.get("action") or None
    if action not in audit.ACTIONS:
        action = None
    page = audit.entries(
        db.session, action=action, limit=PER_PAGE, cursor=request.args.get("cursor")
    )
    return render_template("web/audit.html", page=page, action=action, actions=audit.ACTIONS)
