from __future__ import annotations

import marshmallow as ma

from api.schemas.common import StrictSchema


class ShareLinkCreate(StrictSchema):
    content_id = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "the content item to share"},
    )


class ShareLink(ma.Schema):
    code = ma.fields.String(
        required=True, metadata={"description": "10 characters of [0-9a-z] without i, l, o, u"}
    )
    url = ma.fields.String(required=True, metadata={"description": "the address to share"})
    content_id = ma.fields.String(required=True)
    fan_id = ma.fields.String(required=True)
    active = ma.fields.Boolean(required=True)
    created_at = ma.fields.DateTime(required=True)
    disabled_at = ma.fields.DateTime(allow_none=True)


class ShareLinkStats(ShareLink):
    clicks = ma.fields.Integer(required=True, metadata={"description": "clicks recorded"})
