"""Disabled webhook endpoints in the dashboard: the notice on the artist's and the
operator's pages (``_webhook_notices.html``) posts here to enable one again, through
the same service as ``POST /v1/webhook-endpoints/{id}/enable``."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request

from api.extensions import db
from api.web import signin
from api.web.views import bp
from royalties.errors import Forbidden
from royalties.webhooks.endpoints import Owner, enable_endpoint


def owner(viewer: signin.Viewer) -> Owner:
    """The viewer as the owner of endpoints (fans own none)."""
    if viewer.role == "admin":
        return Owner("admin", None)
    if viewer.role == "artist":
        return Owner("artist", viewer.owner_id)
    raise Forbidden("webhook endpoints are an artist's or the operator's")


@bp.post("/webhook-endpoints/<endpoint_id>/enable")
@signin.signed_in
def webhook_enable(endpoint_id: str) -> Any:
    viewer = signin.viewer()
    endpoint = enable_endpoint(db.session, owner(viewer), endpoint_id)
    flash(
        f"Enabled {endpoint.url} again: its pending deliveries go out first. To send "
        "what it missed while disabled, replay since then "
        f"(POST /v1/webhook-endpoints/{endpoint.id}/replay).",
        "info",
    )
    back = signin.safe_next(request.form.get("back")) or signin.landing(viewer)
    return redirect(back + "#webhook-notices", code=303)
