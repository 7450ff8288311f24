"""API keys as the API shows them: ids, prefixes, roles and dates, never a hash."""

from __future__ import annotations

import marshmallow as ma

from api.schemas.common import PageQuery


class KeyRotated(ma.Schema):
    api_key = ma.fields.String(
        required=True, metadata={"description": "the new key, shown once; only its hash is stored"}
    )
    key_id = ma.fields.String(required=True, metadata={"description": "id of the new key"})
    prefix = ma.fields.String(required=True, metadata={"description": "first characters of it"})
    role = ma.fields.String(required=True)
    owner_id = ma.fields.String(allow_none=True, required=True)
    created_at = ma.fields.DateTime(required=True)
    replaced_key_id = ma.fields.String(
        required=True, metadata={"description": "id of the key this one replaces, now revoked"}
    )


class Key(ma.Schema):
    id = ma.fields.String(required=True)
    prefix = ma.fields.String(required=True, metadata={"description": "first characters of it"})
    role = ma.fields.String(required=True)
    owner_id = ma.fields.String(allow_none=True, required=True)
    created_at = ma.fields.DateTime(required=True)
    revoked_at = ma.fields.DateTime(allow_none=True, required=True)


class KeyQuery(PageQuery):
    owner_id = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=64),
        metadata={"description": "only the keys of this artist, storefront or fan"},
    )


class KeyPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(Key), required=True)
    next_cursor = ma.fields.String(allow_none=True)
