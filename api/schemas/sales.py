from __future__ import annotations

from typing import Any

import marshmallow as ma

from api.errors import ProblemSchema
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


def _idempotency_key(**kwargs: Any) -> ma.fields.String:
    """An idempotency key, in a header or in a batch item: the same rules in both."""
    return ma.fields.String(
        required=True,
        validate=[
            ma.validate.Length(min=1, max=255),
            # Printable ASCII, not only spaces: what a header carries unchanged everywhere.
            WholeMatch(
                r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$",
                error="printable ASCII characters, not only spaces",
            ),
        ],
        **kwargs,
    )


class IdempotencyHeader(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = _idempotency_key(
        data_key="Idempotency-Key",
        metadata={"description": "unique per request; a retry with the same key and body replays"},
    )


MAX_BATCH = 500


class PurchaseBatchItemIn(PurchaseIn):
    """One purchase of a batch: the body of ``POST /v1/purchases`` and its key."""

    idempotency_key = _idempotency_key()


class PurchaseBatchIn(StrictSchema):
    # Items are only checked to be objects here: each is then validated on its own
    # (PurchaseBatchItemIn), so a malformed item fails alone, in its own result.
    purchases = ma.fields.List(
        ma.fields.Dict(
            metadata={
                "description": "a purchase: the fields of `PurchaseIn` (the body of "
                "`POST /v1/purchases`) and `idempotency_key`, by the rules of the "
                "`Idempotency-Key` header"
            }
        ),
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_BATCH),
        metadata={"description": f"1 to {MAX_BATCH} purchases, answered in this order"},
    )


class PurchaseBatchResult(ma.Schema):
    status = ma.fields.Integer(
        required=True,
        metadata={
            "description": "what `POST /v1/purchases` would have answered for this item: "
            "201 with `purchase`, or an error status with `problem`"
        },
    )
    purchase = ma.fields.Nested(
        PurchaseOut, metadata={"description": "the receipt, when `status` is 201"}
    )
    replayed = ma.fields.Boolean(
        metadata={
            "description": "with `purchase`: true when its `idempotency_key` already had "
            "this answer (nothing was recorded again)"
        }
    )
    problem = ma.fields.Nested(
        ProblemSchema,
        metadata={
            "description": "when `status` is not 201: the item's problem document, as "
            "`POST /v1/purchases` answers it"
        },
    )


class PurchaseBatchOut(ma.Schema):
    results = ma.fields.List(ma.fields.Nested(PurchaseBatchResult), required=True)
