"""The operator's audit log as the API shows it: who, what, when, on what."""

from __future__ import annotations

import marshmallow as ma

from api.schemas.common import PageQuery
from royalties.audit import ACTIONS


class Actor(ma.Schema):
    key_id = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "the API key that acted"}
    )
    link_id = ma.fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "or the sign-in link whose dashboard session acted"},
    )
    role = ma.fields.String(
        required=True, metadata={"description": "admin, artist, storefront, fan, or cli"}
    )
    owner_id = ma.fields.String(allow_none=True, required=True)


class AuditEntry(ma.Schema):
    id = ma.fields.Integer(required=True)
    at = ma.fields.DateTime(required=True)
    actor = ma.fields.Nested(Actor, required=True)
    action = ma.fields.String(required=True, metadata={"enum": sorted(ACTIONS)})
    target_id = ma.fields.String(allow_none=True, required=True)
    detail = ma.fields.Dict(
        required=True, metadata={"description": "a few facts of the action; never a secret"}
    )


class AuditQuery(PageQuery):
    action = ma.fields.String(load_default=None, validate=ma.validate.OneOf(sorted(ACTIONS)))
    actor_key_id = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=64),
        metadata={"description": "only what this API key did"},
    )


class AuditPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AuditEntry), required=True)
    next_cursor = ma.fields.String(allow_none=True)
