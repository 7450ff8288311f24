from __future__ import annotations

import marshmallow as ma

from api.schemas.common import Currency, HttpUrl, Money, StrictSchema, Text
from royalties.models import CONTENT_KINDS
from royalties.models.graph import MAX_DEPTH
from royalties.plans import DEFAULT_HOLD_DAYS, MAX_HOLD_DAYS, MAX_TOTAL_BPS


class ContentCreate(StrictSchema):
    title = Text(max_length=300, required=True)
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(CONTENT_KINDS))
    price = Money(allow_zero=True, required=True)
    currency = Currency(required=True, metadata={"description": "ISO 4217, e.g. USD"})
    storefront_url = HttpUrl(required=True)


class Content(ma.Schema):
    id = ma.fields.String(required=True)
    artist_id = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    price = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)
    storefront_url = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)


class PlanIn(StrictSchema):
    level_rates_bps = ma.fields.List(
        ma.fields.Integer(strict=True, validate=ma.validate.Range(min=0, max=MAX_TOTAL_BPS)),
        required=True,
        validate=ma.validate.Length(min=1, max=MAX_DEPTH),
        metadata={"description": f"1 to {MAX_DEPTH} rates in basis points, sum <= {MAX_TOTAL_BPS}"},
    )
    hold_days = ma.fields.Integer(
        strict=True,
        load_default=DEFAULT_HOLD_DAYS,
        validate=ma.validate.Range(min=0, max=MAX_HOLD_DAYS),
    )

    @ma.validates_schema
    def _sum(self, data: dict[str, object], **_: object) -> None:
        rates = data.get("level_rates_bps") or []
        total = sum(rates)  # type: ignore[arg-type]
        if total > MAX_TOTAL_BPS:
            raise ma.ValidationError(
                f"rates sum to {total} bps; at most {MAX_TOTAL_BPS}", "level_rates_bps"
            )


class Plan(ma.Schema):
    version = ma.fields.Integer(required=True)
    scope = ma.fields.String(required=True)
    artist_id = ma.fields.String(required=True)
    content_id = ma.fields.String(allow_none=True)
    level_rates_bps = ma.fields.List(ma.fields.Integer(), required=True)
    hold_days = ma.fields.Integer(required=True)
    created_at = ma.fields.DateTime(required=True)
