"""Share links, and the public click redirect ``/l/<code>``."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, redirect, request
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.wrappers import Response as BaseResponse

from api.auth import current_principal, require
from api.errors import PROBLEM_MIME, ProblemSchema
from api.extensions import batched_clicks, db, forget_link
from api.schemas.links import ShareLink, ShareLinkCreate, ShareLinkStats
from royalties.models import ShareLink as ShareLinkRow
from royalties.services import links

blp = Blueprint("share_links", __name__, description="Share links and clicks")

# Human-facing: a browser followed a dead link. It names nothing from the request.
NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Link not found</title></head>
<body><h1>Link not found</h1>
<p>This share link does not exist or has been disabled.</p></body></html>
"""


def _link(row: ShareLinkRow, **extra: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "url": links.share_url(current_app.config["PUBLIC_BASE_URL"], row.code),
        "content_id": row.content_id,
        "fan_id": row.fan_id,
        "active": row.active,
        "created_at": row.created_at,
        "disabled_at": row.disabled_at,
        **extra,
    }


@blp.route("/v1/share-links")
class ShareLinks(MethodView):
    @require("fan")
    @blp.arguments(ShareLinkCreate())
    @blp.response(201, ShareLink)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a share link for a content item (fan)

        Every call makes a new link, so a fan can tell where clicks came from; earlier
        links keep working until disabled.
        """
        fan_id = current_principal().owner_id
        assert fan_id is not None
        return _link(
            links.create_share_link(db.session, fan_id=fan_id, content_id=body["content_id"])
        )


@blp.route("/v1/share-links/<code>")
class ShareLinkItem(MethodView):
    @require("fan", "artist", "admin")
    @blp.response(200, ShareLinkStats)
    def get(self, code: str) -> dict[str, Any]:
        """A share link with its click count (its fan, the content's artist, admin)"""
        principal = current_principal()
        row, clicks = links.link_with_stats(db.session, code)
        links.check_may_manage(row, acting_role=principal.role, acting_owner_id=principal.owner_id)
        return _link(row, clicks=clicks)


@blp.route("/v1/share-links/<code>/disable")
class ShareLinkDisable(MethodView):
    @require("fan", "artist", "admin")
    @blp.response(200, ShareLink)
    def post(self, code: str) -> dict[str, Any]:
        """Disable a share link for good (its fan, the content's artist, admin); idempotent"""
        principal = current_principal()
        row = links.disable_share_link(
            db.session, code=code, acting_role=principal.role, acting_owner_id=principal.owner_id
        )
        forget_link(code)
        return _link(row)


@blp.route("/l/<code>")
class Click(MethodView):
    @blp.response(
        302,
        description="Click recorded; go to the storefront with `ref=<code>` in the query",
        headers={"Location": {"description": "the storefront URL", "schema": {"type": "string"}}},
    )
    @blp.alt_response(404, schema=ProblemSchema, content_type=PROBLEM_MIME)
    @blp.alt_response(
        404,
        schema={"type": "string"},
        content_type="text/html",
        description="Unknown or disabled link: a small HTML page, no click recorded "
        "(a path that is no link at all, e.g. one with a `/` in the code, is a problem)",
    )
    def get(self, code: str) -> BaseResponse:
        """Follow a share link (anyone, no key): record a click and redirect"""
        ip_hash = links.hash_client_address(
            current_app.config["CLICK_HASH_SALT"], request.remote_addr or ""
        )
        agent = request.headers.get("User-Agent", "")
        batched = batched_clicks()
        if batched is not None:  # queued, written within CLICK_BATCH_SECONDS
            target = batched.follow(code, ip_hash, agent)
        else:
            target = links.resolve_click(db.session, code=code, ip_hash=ip_hash, user_agent=agent)
        if target is None:
            return Response(NOT_FOUND_PAGE, status=404, mimetype="text/html")
        response = redirect(target, 302)
        # Every click must reach us to be counted: no cache may replay the redirect.
        response.headers["Cache-Control"] = "no-store"
        return response
