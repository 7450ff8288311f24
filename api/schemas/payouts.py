from __future__ import annotations

from typing import Any

import marshmallow as ma

from api.schemas.common import PageQuery, Text


class PayoutAccountIn(ma.Schema):
    country = ma.fields.String(
        load_default=None,
        validate=ma.validate.Regexp(
            r"\A[A-Z]{2}\Z", error="an ISO 3166 alpha-2 country code in capitals, e.g. FR"
        ),
        metadata={"description": "where the fan lives (default PLATFORM_COUNTRY)"},
    )


class PayoutAccountOut(ma.Schema):
    account_id = ma.fields.String(required=True)
    payouts_enabled = ma.fields.Boolean(required=True)
    transfers_active = ma.fields.Boolean(
        required=True, metadata={"description": "the transfers capability is active at Stripe"}
    )
    onboarding_url = ma.fields.String(required=True)


class PayoutOut(ma.Schema):
    id = ma.fields.String(required=True)
    run_id = ma.fields.String(required=True)
    fan_id = ma.fields.String(required=True)
    currency = ma.fields.String(required=True)
    amount = ma.fields.Integer(required=True)
    state = ma.fields.String(
        required=True, validate=ma.validate.OneOf(("pending", "submitted", "paid", "failed"))
    )
    stripe_transfer_id = ma.fields.String(allow_none=True)
    reversed_amount = ma.fields.Integer(required=True)
    failure_reason = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer(required=True)
    created_at = ma.fields.DateTime(required=True)
    updated_at = ma.fields.DateTime(required=True)


class PayoutEventOut(ma.Schema):
    at = ma.fields.DateTime(required=True)
    from_state = ma.fields.String(allow_none=True)
    to_state = ma.fields.String(required=True)
    detail = ma.fields.String(required=True)


class PayoutDetail(PayoutOut):
    events = ma.fields.List(ma.fields.Nested(PayoutEventOut), required=True)


class NotPaidOut(ma.Schema):
    reason = ma.fields.String(required=True)
    description = ma.fields.String(required=True)
    count = ma.fields.Integer(required=True, metadata={"description": "fan and currency pairs"})


class ShortOut(ma.Schema):
    currency = ma.fields.String(required=True)
    amount = ma.fields.Integer(required=True)


class PayoutRunOut(ma.Schema):
    id = ma.fields.String(required=True)
    complete = ma.fields.Boolean(
        required=True,
        metadata={"description": "every payable fan was paid: nothing failed or unresolved"},
    )
    payouts = ma.fields.List(ma.fields.Nested(PayoutOut), required=True)
    not_paid = ma.fields.List(ma.fields.Nested(NotPaidOut), required=True)
    platform_balance_short = ma.fields.List(ma.fields.Nested(ShortOut), required=True)


class PayoutQuery(PageQuery):
    fan_id = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))


class PayoutPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PayoutOut), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class StripeEventData(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE

    object = ma.fields.Dict(required=True)


class StripeEvent(ma.Schema):
    """The envelope every Stripe event has; Stripe sends more, which is ignored."""

    class Meta:
        unknown = ma.INCLUDE

    id = Text(max_length=255, required=True)
    type = Text(max_length=100, required=True)
    data = ma.fields.Nested(StripeEventData, required=True)


class StripeAccount(ma.Schema):
    """What ``account.updated`` handling reads of its ``data.object``."""

    class Meta:
        unknown = ma.INCLUDE

    id = Text(max_length=255, required=True)
    payouts_enabled = ma.fields.Boolean(truthy={True}, falsy={False})  # JSON true/false only


class StripeTransfer(ma.Schema):
    """What ``transfer.reversed`` / ``transfer.updated`` handling reads of ``data.object``."""

    class Meta:
        unknown = ma.INCLUDE

    id = Text(max_length=255, required=True)
    amount_reversed = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=0))


_HANDLED_OBJECTS: dict[str, type[ma.Schema]] = {
    "account.updated": StripeAccount,
    "transfer.reversed": StripeTransfer,
    "transfer.updated": StripeTransfer,
}


def unreadable_parts(event: dict[str, Any]) -> dict[str, Any]:
    """Field errors of a verified event the webhook would act on; {} when it can be read.

    Events of other types only need the envelope: they are acknowledged and ignored.
    """
    problems = StripeEvent().validate(event)
    schema = _HANDLED_OBJECTS.get(event.get("type")) if not problems else None
    found = schema().validate(event["data"]["object"]) if schema else {}
    return problems or ({"data": {"object": found}} if found else {})


class WebhookAck(ma.Schema):
    received = ma.fields.Boolean(required=True)
    result = ma.fields.String(required=True)
