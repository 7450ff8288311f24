from __future__ import annotations

import marshmallow as ma

from api.schemas.common import PageQuery, StrictSchema, Text
from royalties.fraud.signals import SIGNAL_STATES, SUBJECT_TYPES


class ClearanceOut(ma.Schema):
    reason = ma.fields.String(required=True)
    cleared_by = ma.fields.String(required=True, metadata={"description": "the admin key's id"})
    cleared_at = ma.fields.DateTime(required=True)


class SignalOut(ma.Schema):
    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    subject_type = ma.fields.String(required=True)
    subject_id = ma.fields.String(required=True)
    reason = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)
    state = ma.fields.String(
        required=True,
        metadata={"description": "active: it holds new rewards; cleared: no longer"},
    )
    cleared = ma.fields.Nested(ClearanceOut, required=True, allow_none=True)


class SignalQuery(PageQuery):
    subject_type = ma.fields.String(load_default=None, validate=ma.validate.OneOf(SUBJECT_TYPES))
    subject_id = Text(max_length=32, load_default=None)
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(SIGNAL_STATES))


class SignalPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SignalOut), required=True)
    next_cursor = ma.fields.String(allow_none=True)


class ClearIn(StrictSchema):
    reason = Text(max_length=500, required=True)


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
