from __future__ import annotations

from typing import Any

import marshmallow as ma

from api.schemas.common import Currency, Money, StrictSchema, Text, WholeMatch


class BuyerIn(StrictSchema):
    fan_id = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    email = ma.fields.Email(validate=ma.validate.Length(max=320))
    external_id = Text(max_length=255)

    @ma.validates_schema
    def _exactly_one(self, data: dict[str, Any], **_: Any) -> None:
        given = [k for k in ("fan_id", "email", "external_id") if data.get(k) is not None]
        if len(given) != 1:
            raise ma.ValidationError("give exactly one of fan_id, email, external_id", "_schema")


class PurchaseIn(StrictSchema):
    content_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    amount = Money(required=True)
    currency = Currency(required=True)
    buyer = ma.fields.Nested(BuyerIn, required=True)
    share_code = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "the share code the buyer came through (the ref= parameter)"},
    )
    client_ip = ma.fields.IP(
        load_default=None,
        metadata={
            "description": "the buyer's IP address as the storefront saw it; only a salted "
            "hash is kept, for fraud signals"
        },
    )


class RewardLine(ma.Schema):
    level = ma.fields.Integer(required=True)
    fan_id = ma.fields.String(required=True)
    amount = ma.fields.Integer(required=True)


class PurchaseOut(ma.Schema):
    id = ma.fields.String(required=True)
    content_id = ma.fields.String(required=True)
    storefront_id = ma.fields.String(required=True)
    buyer_id = ma.fields.String(required=True)
    amount = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    artist_share = ma.fields.Integer(required=True)
    fee = ma.fields.Integer(required=True)
    plan_version = ma.fields.Integer(required=True)
    share_code = ma.fields.String(allow_none=True)
    refunded_amount = ma.fields.Integer(required=True)
    attribution = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(("link", "sponsor", "direct")),
        metadata={
            "description": "who level 1 is: the share link's owner, the buyer's sponsor, "
            "or nobody (a direct sale)"
        },
    )
    warnings = ma.fields.List(
        ma.fields.String(),
        required=True,
        metadata={
            "description": "e.g. a share_code that attributed nothing (unknown, "
            "disabled, or another artist's)"
        },
    )
    rewards = ma.fields.List(ma.fields.Nested(RewardLine), required=True)
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class RefundIn(StrictSchema):
    amount = Money(required=True)


class RefundOut(ma.Schema):
    id = ma.fields.String(required=True)
    purchase_id = ma.fields.String(required=True)
    amount = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    reversed = ma.fields.List(ma.fields.Nested(RewardLine), required=True)
    artist_reversed = ma.fields.Integer(required=True)
    fee_reversed = ma.fields.Integer(required=True)
    refunded_total = ma.fields.Integer(required=True)
    created_at = ma.fields.String(required=True, metadata={"format": "date-time"})


class IdempotencyHeader(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = ma.fields.String(
        data_key="Idempotency-Key",
        required=True,
        validate=[
            ma.validate.Length(min=1, max=255),
            # Printable ASCII, not only spaces: what a header carries unchanged everywhere.
            WholeMatch(
                r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$",
                error="printable ASCII characters, not only spaces",
            ),
        ],
        metadata={"description": "unique per request; a retry with the same key and body replays"},
    )
