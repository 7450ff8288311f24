from __future__ import annotations

import marshmallow as ma

from api.schemas.common import PageQuery


class PayoutAccountOut(ma.Schema):
    account_id = ma.fields.String(required=True)
    payouts_enabled = ma.fields.Boolean(required=True)
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


class PayoutRunOut(ma.Schema):
    id = ma.fields.String(required=True)
    payouts = ma.fields.List(ma.fields.Nested(PayoutOut), required=True)


class PayoutQuery(PageQuery):
    fan_id = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))


class PayoutPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PayoutOut), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class WebhookAck(ma.Schema):
    received = ma.fields.Boolean(required=True)
    result = ma.fields.String(required=True)
