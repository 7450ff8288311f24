from __future__ import annotations

import marshmallow as ma

from api.schemas.common import StrictSchema, WholeMatch


class FanCreate(StrictSchema):
    handle = ma.fields.String(
        required=True,
        validate=WholeMatch(
            r"^[A-Za-z0-9_.-]{2,64}$", error="2 to 64 letters, digits, '_', '.' or '-'"
        ),
    )
    email = ma.fields.Email(load_default=None, validate=ma.validate.Length(max=320))
    ref = ma.fields.String(
        load_default=None,
        validate=WholeMatch(r"^[A-Za-z0-9_]{1,64}$", error="not a share code or fan id"),
        metadata={"description": "a share code (or a sponsor's fan id) that sets the sponsor"},
    )


class FanCreated(ma.Schema):
    id = ma.fields.String(required=True)
    handle = ma.fields.String(required=True)
    sponsor_id = ma.fields.String(allow_none=True)
    api_key = ma.fields.String(required=True)


class DownlineLevel(ma.Schema):
    level = ma.fields.Integer(required=True)
    count = ma.fields.Integer(required=True)


class FanProfile(ma.Schema):
    id = ma.fields.String(required=True)
    handle = ma.fields.String(required=True)
    email = ma.fields.String(allow_none=True)
    sponsor_id = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime(required=True)
    notifications = ma.fields.Boolean(
        required=True,
        metadata={"description": "whether the fan gets emails about rewards and payouts"},
    )
    downline = ma.fields.List(ma.fields.Nested(DownlineLevel), required=True)


class FanUpdate(StrictSchema):
    notifications = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "false: no more emails about rewards earned, rewards available "
            "and payouts paid; true: they start again"
        },
    )
