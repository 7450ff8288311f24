"""Webhook endpoints as the API shows them: the secret only when it is made, and each
delivery with its log of attempts."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma

from api.schemas.common import StrictSchema
from royalties.db import utcnow
from royalties.models.events import DELIVERY_STATES, EVENT_TYPES
from royalties.webhooks.endpoints import MAX_URL, WithSecret


class EndpointCreate(StrictSchema):
    url = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_URL),
        metadata={
            "description": "where events are posted: http:// or https:// with a host, "
            "no user:password, no #fragment"
        },
    )
    events = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(max=64)),
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(max=len(EVENT_TYPES) * 2),
        metadata={
            "description": "the event types to send; left out or null: every type, "
            f"including types added later. Known: {', '.join(EVENT_TYPES)}",
        },
    )


class Endpoint(ma.Schema):
    id = ma.fields.String(required=True)
    url = ma.fields.String(required=True)
    events = ma.fields.List(
        ma.fields.String(),
        allow_none=True,
        required=True,
        metadata={"description": "the event types it gets; null: every type"},
    )
    owner_role = ma.fields.String(
        required=True, metadata={"description": "admin, artist or storefront"}
    )
    owner_id = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "null for an admin's"}
    )
    created_at = ma.fields.DateTime(required=True)
    previous_secret_until = ma.fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "after a rotation: until when the previous secret signs too"},
    )
    failing_since = ma.fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "the first failed attempt since its last success"},
    )
    disabled_at = ma.fields.DateTime(
        allow_none=True,
        required=True,
        metadata={
            "description": "when it was disabled for failing too long (null: enabled); "
            "nothing is sent until it is enabled again"
        },
    )
    disabled_reason = ma.fields.String(allow_none=True, required=True)


class EndpointWithSecret(Endpoint):
    secret = ma.fields.String(
        required=True,
        metadata={
            # Not spelled out: no secret's prefix is ever in the published document.
            "description": "the signing secret, in the Standard Webhooks format (the "
            "`whsec` prefix and base64), shown only here; give it to any Standard "
            "Webhooks library to verify deliveries"
        },
    )

    @ma.pre_dump
    def _flatten(self, made: WithSecret, **_: Any) -> dict[str, Any]:
        shown = {name: getattr(made.endpoint, name) for name in Endpoint().fields}
        return shown | {"secret": made.secret}


class EndpointPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(Endpoint), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class Attempt(ma.Schema):
    at = ma.fields.DateTime(required=True, metadata={"description": "when it was sent"})
    status_code = ma.fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "the receiver's HTTP status; null when none came back"},
    )
    duration_ms = ma.fields.Integer(
        required=True, metadata={"description": "how long the receiver took to answer"}
    )
    error = ma.fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "why it failed (a status, a timeout, a refused connection)"},
    )


class Delivery(ma.Schema):
    id = ma.fields.Integer(required=True)
    event_id = ma.fields.String(
        required=True, metadata={"description": "also the `webhook-id` header of every attempt"}
    )
    event_type = ma.fields.String(required=True, metadata={"enum": list(EVENT_TYPES)})
    state = ma.fields.String(required=True, metadata={"enum": list(DELIVERY_STATES)})
    attempts = ma.fields.Integer(
        required=True, metadata={"description": "attempts since it was last queued"}
    )
    next_attempt_at = ma.fields.DateTime(
        allow_none=True, required=True, metadata={"description": "when pending: when it is due"}
    )
    delivered_at = ma.fields.DateTime(allow_none=True, required=True)
    last_status = ma.fields.Integer(allow_none=True, required=True)
    last_error = ma.fields.String(allow_none=True, required=True)
    created_at = ma.fields.DateTime(required=True)
    attempt_log = ma.fields.List(
        ma.fields.Nested(Attempt),
        required=True,
        metadata={"description": "every attempt, oldest first, replays included"},
    )


class DeliveryPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(Delivery), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class ReplayIn(StrictSchema):
    since = ma.fields.AwareDateTime(
        required=True,
        default_timezone=UTC,
        metadata={
            "description": "replay the events written at or after this time (UTC when it "
            "names no offset); not in the future"
        },
    )

    @ma.validates("since")
    def _not_ahead(self, value: Any, **_: Any) -> None:
        try:
            value = value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ma.ValidationError("is out of range") from None
        if value > utcnow():
            raise ma.ValidationError("must not be in the future")


class Replayed(ma.Schema):
    queued = ma.fields.Integer(
        required=True, metadata={"description": "how many deliveries are due again now"}
    )
