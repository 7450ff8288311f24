from __future__ import annotations

import marshmallow as ma

from api.schemas.common import HttpUrl, StrictSchema, Text


def _artist_email() -> ma.fields.Email:
    return ma.fields.Email(
        load_default=None,
        validate=ma.validate.Length(max=254),
        metadata={"description": "where the artist's dashboard sign-in links are sent"},
    )


class ArtistCreate(StrictSchema):
    name = Text(max_length=200, required=True)
    email = _artist_email()


class InvitationIn(StrictSchema):
    email = _artist_email()
    email.metadata["description"] = (
        "sets or changes the artist's address first (refused when another artist uses it); "
        "without it the invitation goes to the address the artist has"
    )


class InvitationOut(ma.Schema):
    artist_id = ma.fields.String(required=True)
    email = ma.fields.String(required=True, metadata={"description": "where it was sent"})
    subject = ma.fields.String(required=True)
    expires_at = ma.fields.DateTime(
        required=True, metadata={"description": "until when its single-use link works"}
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
