"""A fan's balances and rewards, as ``/v1/fans/{id}/balance`` and ``/rewards`` show them."""

from __future__ import annotations

import marshmallow as ma

from royalties import rewards


class BalanceLine(ma.Schema):
    currency = ma.fields.String(required=True)
    pending = ma.fields.Integer(required=True)
    available = ma.fields.Integer(required=True)
    paid = ma.fields.Integer(required=True)


class BalanceOut(ma.Schema):
    fan_id = ma.fields.String(required=True)
    balances = ma.fields.List(ma.fields.Nested(BalanceLine), required=True)


class RewardItem(ma.Schema):
    id = ma.fields.String(required=True)
    fan_id = ma.fields.String(required=True)
    purchase_id = ma.fields.String(required=True)
    content_id = ma.fields.String(required=True)
    level = ma.fields.Integer(required=True)
    amount = ma.fields.Integer(required=True)
    reversed_amount = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    state = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(rewards.SHOWN_STATES),
    )
    available_at = ma.fields.DateTime(required=True)
    created_at = ma.fields.DateTime(required=True)


class RewardPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RewardItem), required=True)
    next_cursor = ma.fields.String(allow_none=True)
