from __future__ import annotations

import marshmallow as ma

from api.schemas.common import StrictSchema, Text


class SignalOut(ma.Schema):
    kind = ma.fields.String(required=True)
    subject_type = ma.fields.String(required=True)
    subject_id = ma.fields.String(required=True)
    reason = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)


class HeldReward(ma.Schema):
    reward_id = ma.fields.String(required=True)
    purchase_id = ma.fields.String(required=True)
    fan_id = ma.fields.String(required=True)
    level = ma.fields.Integer(required=True)
    amount = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)
    signals = ma.fields.List(ma.fields.Nested(SignalOut), required=True)


class ReviewPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(HeldReward), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class DecisionIn(StrictSchema):
    decision = ma.fields.String(required=True, validate=ma.validate.OneOf(("approve", "reject")))
    reason = Text(max_length=500, required=True)


class DecisionOut(ma.Schema):
    reward_id = ma.fields.String(required=True)
    decision = ma.fields.String(required=True)
    reason = ma.fields.String(required=True)
    decided_by = ma.fields.String(required=True)
    decided_at = ma.fields.DateTime(required=True)
    review_state = ma.fields.String(required=True)
