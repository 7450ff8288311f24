from __future__ import annotations

import marshmallow as ma

from api.schemas.common import HttpUrl, StrictSchema, Text


class ArtistCreate(StrictSchema):
    name = Text(max_length=200, required=True)
    email = ma.fields.Email(
        load_default=None,
        validate=ma.validate.Length(max=254),
        metadata={"description": "where the artist's dashboard sign-in links are sent"},
    )


class StorefrontCreate(StrictSchema):
    name = Text(max_length=200, required=True)
    base_url = HttpUrl(required=True)


class Created(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    api_key = ma.fields.String(
        required=True, metadata={"description": "shown once; only its hash is stored"}
    )
