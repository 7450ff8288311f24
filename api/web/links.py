"""The fan page's share links: "Get my link" for a content item, and each link's QR code
(an SVG made by ``segno``, served by the app: no external service sees the links)."""

from __future__ import annotations

import io
from typing import Any

import segno
from flask import Response, current_app, redirect, request, url_for

from api.extensions import db
from api.web import signin
from api.web.views import bp
from royalties.errors import Forbidden, ValidationFailed
from royalties.services.links import create_share_link, get_share_link, looks_like_code, share_url

QR_SCALE = 4


@bp.post("/fans/<fan_id>/links")
@signin.signed_in
def fan_get_link(fan_id: str) -> Any:
    """ "Get my link" for one content item."""
    if signin.check_may_view("fan", fan_id).role != "fan":
        raise Forbidden("only the fan can make links of their own")
    content_id = request.form.get("content_id", "").strip()
    if not content_id or len(content_id) > 64:
        raise ValidationFailed("Choose a content item to get a link for.")
    link = create_share_link(db.session, fan_id=fan_id, content_id=content_id)
    artist = request.form.get("artist") or None
    target = url_for("web.fan", fan_id=fan_id, artist=artist)
    return redirect(f"{target}#link-{link.code}", code=303)


@bp.get("/links/<code>/qr.svg")
@signin.signed_in
def link_qr(code: str) -> Any:
    """The link's URL as a QR code, for the fan who owns it (or an admin)."""
    if not looks_like_code(code):
        raise ValidationFailed("That is not a share code.")
    link = get_share_link(db.session, code)
    signin.check_may_view("fan", link.fan_id)
    url = share_url(current_app.config["PUBLIC_BASE_URL"], link.code)
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=QR_SCALE, border=2, xmldecl=False)
    response = Response(out.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
