"""Outbound webhook endpoints: an admin's, an artist's or a storefront's own, their
secrets, their deliveries and replays (``royalties/webhooks/endpoints.py``)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal, require
from api.extensions import db
from api.schemas.common import PageQuery
from api.schemas.webhooks import (
    DeliveryPage,
    Endpoint,
    EndpointCreate,
    EndpointPage,
    EndpointWithSecret,
    Replayed,
    ReplayIn,
)
from royalties.models import WebhookEndpoint
from royalties.webhooks import endpoints
from royalties.webhooks.endpoints import DeliveryView, Owner, WithSecret

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/v1",
    description="Outbound webhook endpoints (signed the Standard Webhooks way)",
)

ROLES = ("admin", "artist", "storefront")


def owner() -> Owner:
    """The caller as the owner of endpoints: an admin owns the platform's (and sees all)."""
    principal = current_principal()
    return Owner(principal.role, None if principal.role == "admin" else principal.owner_id)


def shown(view: DeliveryView) -> dict[str, Any]:
    delivery = view.delivery
    return {
        "id": delivery.id,
        "event_id": view.event_id,
        "event_type": view.event_type,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at if delivery.state == "pending" else None,
        "delivered_at": delivery.delivered_at,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "attempt_log": view.attempts,
    }


@blp.route("/webhook-endpoints")
class Endpoints(MethodView):
    @require(*ROLES)
    @blp.arguments(PageQuery(), location="query")
    @blp.response(200, EndpointPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Your webhook endpoints, newest first (admin: every one); never their secrets

        Each shows whether it is failing (`failing_since`) or disabled (`disabled_at`,
        `disabled_reason`). Paged with `limit` and `cursor`."""
        page = endpoints.list_endpoints(
            db.session, owner(), limit=query["limit"], cursor=query["cursor"]
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    @require(*ROLES)
    @blp.arguments(EndpointCreate())
    @blp.response(201, EndpointWithSecret)
    def post(self, body: dict[str, Any]) -> WithSecret:
        """Add a webhook endpoint; its signing secret is in this answer only

        Events are posted to `url` as JSON `{id, type, created_at, data}`, signed with
        the `secret` per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
        `webhook-signature`). An endpoint gets the events its owner may see: a
        storefront those of its purchases and refunds and the rewards on them, an
        artist those of its content, an admin every event; `events` narrows that to
        some types. Keep the secret: it is never shown again (rotate it to get a new one).
        """
        return endpoints.create_endpoint(
            db.session, owner(), url=body["url"], events=body["events"]
        )


@blp.route("/webhook-endpoints/<endpoint_id>")
class EndpointItem(MethodView):
    @require(*ROLES)
    @blp.response(200, Endpoint)
    def get(self, endpoint_id: str) -> WebhookEndpoint:
        """One of your webhook endpoints (admin: anyone's), with whether it is disabled

        Another owner's endpoint is 404, as one that does not exist. The secret is not
        shown: rotate it to get a new one."""
        return endpoints.get_endpoint(db.session, owner(), endpoint_id)

    @require(*ROLES)
    @blp.response(204)
    def delete(self, endpoint_id: str) -> None:
        """Delete a webhook endpoint, with its deliveries and their log; nothing more is sent

        Deliveries still pending are dropped with it; an endpoint added again for the
        same URL starts with a new secret and no history."""
        endpoints.delete_endpoint(db.session, owner(), endpoint_id)


@blp.route("/webhook-endpoints/<endpoint_id>/rotate-secret")
class SecretRotation(MethodView):
    @require(*ROLES)
    @blp.response(200, EndpointWithSecret)
    def post(self, endpoint_id: str) -> WithSecret:
        """Give the endpoint a new signing secret, shown in this answer only

        For 24 hours (until `previous_secret_until`) every delivery carries two
        signatures in `webhook-signature`, one with the new secret and one with the
        previous, so a receiver can switch to the new secret without losing a delivery.
        """
        return endpoints.rotate_secret(db.session, owner(), endpoint_id)


@blp.route("/webhook-endpoints/<endpoint_id>/enable")
class Enabling(MethodView):
    @require(*ROLES)
    @blp.response(200, Endpoint)
    def post(self, endpoint_id: str) -> WebhookEndpoint:
        """Deliver to a disabled endpoint again; a no-op for one that is enabled

        An endpoint whose deliveries failed for `WEBHOOK_DISABLE_AFTER_HOURS` is
        disabled (`disabled_at`, `disabled_reason`). Enabled again, its pending
        deliveries go first; events written while it was disabled are not queued for
        it: replay them (`POST .../replay`) once the receiver is fixed.
        """
        return endpoints.enable_endpoint(db.session, owner(), endpoint_id)


@blp.route("/webhook-endpoints/<endpoint_id>/deliveries")
class Deliveries(MethodView):
    @require(*ROLES)
    @blp.arguments(PageQuery(), location="query")
    @blp.response(200, DeliveryPage)
    def get(self, query: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
        """The endpoint's deliveries, newest first, each with its log of attempts

        Each attempt: when it was sent, the receiver's status code, how long it took to
        answer, and the error when it failed."""
        page = endpoints.list_deliveries(
            db.session, owner(), endpoint_id, limit=query["limit"], cursor=query["cursor"]
        )
        return {"items": [shown(v) for v in page.items], "next_cursor": page.next_cursor}


@blp.route("/webhook-endpoints/<endpoint_id>/replay")
class Replay(MethodView):
    @require(*ROLES)
    @blp.arguments(ReplayIn())
    @blp.response(202, Replayed)
    def post(self, body: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
        """Send again every event since a time that this endpoint may see and wants

        Deliveries already made (delivered or failed) go back to pending with a fresh
        retry schedule; events the endpoint has no delivery of (written while it was
        disabled, say) get one. They are due at once; the worker sends them with the
        same `webhook-id` as before, so a receiver that keeps the ids it has seen can
        drop repeats. A disabled endpoint gets them once it is enabled again.
        """
        queued = endpoints.replay(db.session, owner(), endpoint_id, since=body["since"])
        return {"queued": queued}
