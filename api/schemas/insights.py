"""Insights, the plan simulator and fan statements: query parameters and answers.

Scores (PageRank, betweenness) are strings with six decimals, like every figure near
money in this API: no floats in a payload.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import marshmallow as ma
from webargs.fields import DelimitedList

from api.schemas.common import StrictSchema

_INSTANT_HELP = (
    "ISO 8601: a date (YYYY-MM-DD, midnight UTC) or a timestamp (UTC unless it has an offset)"
)


class Instant(ma.fields.String):
    """An ISO 8601 date (midnight UTC) or timestamp (UTC unless it carries an offset),
    loaded as an aware UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            if len(raw) == 10:
                day = date.fromisoformat(raw)
                return datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = datetime.fromisoformat(raw) if 10 < len(raw) <= 40 else None
            if moment is not None:
                return (
                    moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
                )
        except (ValueError, OverflowError):
            pass
        raise ma.ValidationError("not an ISO 8601 date (YYYY-MM-DD) or timestamp")


class PeriodQuery(StrictSchema):
    start = Instant(data_key="from", load_default=None, metadata={"description": _INSTANT_HELP})
    end = Instant(
        data_key="to",
        load_default=None,
        metadata={"description": _INSTANT_HELP + "; the period is [from, to)"},
    )

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ma.ValidationError("must not be before from", "to")


class InsightsQuery(PeriodQuery):
    refresh = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "recompute now instead of serving the cached figures"},
    )


class SimulateQuery(StrictSchema):
    level_rates_bps = DelimitedList(
        ma.fields.Integer(),
        required=True,
        metadata={"description": "comma-separated basis points per level, e.g. 500,200,100"},
    )


class StatementQuery(PeriodQuery):
    format = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf(("json", "csv")),
        metadata={"description": "json or csv; without it, `Accept: text/csv` asks for CSV"},
    )


# -- answers ----------------------------------------------------------------------------


class FanRow(ma.Schema):
    fan_id = ma.fields.String(required=True)
    handle = ma.fields.String(required=True)
    attributed_revenue = ma.fields.Integer(required=True)
    revenue_any_level = ma.fields.Integer(required=True)
    rewards = ma.fields.Integer(required=True)
    pagerank = ma.fields.String(
        required=True,
        metadata={
            "example": "0.012345",
            "description": "share of the graph's influence; all fans' add up to 1",
        },
    )
    betweenness = ma.fields.String(
        required=True,
        metadata={
            "example": "0.250000",
            "description": "share of the pairs of other fans whose link runs through this fan",
        },
    )
    downline = ma.fields.List(
        ma.fields.Integer(), required=True, metadata={"description": "fans 1..5 levels below"}
    )
    downline_total = ma.fields.Integer(required=True)
    lifetime_value = ma.fields.Integer(required=True)


class Cascade(ma.Schema):
    """A chain of fans that carried sales, listed once however many sales it carried."""

    purchase_id = ma.fields.String(
        required=True, metadata={"description": "the chain's largest sale"}
    )
    levels = ma.fields.Integer(required=True, metadata={"description": "the chain's length"})
    fan_ids = ma.fields.List(
        ma.fields.String(), required=True, metadata={"description": "level 1 first"}
    )
    sales = ma.fields.Integer(
        required=True, metadata={"description": "how many sales went through this chain"}
    )


class GraphSummary(ma.Schema):
    fans = ma.fields.Integer(required=True)
    edges = ma.fields.Integer(required=True)
    depth = ma.fields.Integer(required=True)
    largest_cascades = ma.fields.List(ma.fields.Nested(Cascade), required=True)


class TopFans(ma.Schema):
    attributed_revenue = ma.fields.List(ma.fields.Nested(FanRow), required=True)
    revenue_any_level = ma.fields.List(ma.fields.Nested(FanRow), required=True)
    rewards = ma.fields.List(ma.fields.Nested(FanRow), required=True)
    pagerank = ma.fields.List(ma.fields.Nested(FanRow), required=True)
    betweenness = ma.fields.List(ma.fields.Nested(FanRow), required=True)
    downline = ma.fields.List(ma.fields.Nested(FanRow), required=True)


class ProgramReturn(ma.Schema):
    start = ma.fields.String(data_key="from", attribute="from", allow_none=True)
    end = ma.fields.String(data_key="to", attribute="to", allow_none=True)
    attributed_revenue = ma.fields.Integer(required=True)
    direct_revenue = ma.fields.Integer(required=True)
    rewards = ma.fields.Integer(required=True)
    attributed_sales = ma.fields.Integer(required=True)
    direct_sales = ma.fields.Integer(required=True)
    reward_cost_per_attributed_sale = ma.fields.Integer(allow_none=True)
    return_bps = ma.fields.Integer(
        allow_none=True,
        metadata={"description": "floor((attributed_revenue - rewards) * 10000 / rewards)"},
    )
    currencies = ma.fields.List(ma.fields.String(), required=True)


class SeriesPoint(ma.Schema):
    date = ma.fields.String(required=True, metadata={"format": "date"})
    sales = ma.fields.Integer(required=True)
    revenue = ma.fields.Integer(required=True)
    rewards = ma.fields.Integer(required=True)


class PictureNode(ma.Schema):
    id = ma.fields.String(required=True)
    handle = ma.fields.String(required=True)
    level = ma.fields.Integer(
        required=True,
        metadata={"description": "depth in the referral graph: 0 for a fan without sponsor"},
    )
    x = ma.fields.Integer(required=True)
    y = ma.fields.Integer(required=True)
    broker = ma.fields.Boolean(required=True)


class Picture(ma.Schema):
    nodes = ma.fields.List(ma.fields.Nested(PictureNode), required=True)
    edges = ma.fields.List(
        ma.fields.List(ma.fields.String()),
        required=True,
        metadata={"description": "[sponsor id, fan id] pairs"},
    )


class InsightsOut(ma.Schema):
    artist_id = ma.fields.String(required=True)
    computed_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    graph = ma.fields.Nested(GraphSummary, required=True)
    top = ma.fields.Nested(TopFans, required=True)
    roi = ma.fields.Nested(ProgramReturn, required=True)
    series = ma.fields.List(ma.fields.Nested(SeriesPoint), required=True)
    picture = ma.fields.Nested(Picture, required=True)


class SimulatedLevel(ma.Schema):
    level = ma.fields.Integer(required=True)
    amount = ma.fields.Integer(required=True)
    count = ma.fields.Integer(required=True)


class SimulationOut(ma.Schema):
    level_rates_bps = ma.fields.List(ma.fields.Integer(), required=True)
    sales = ma.fields.Integer(required=True)
    per_level = ma.fields.List(ma.fields.Nested(SimulatedLevel), required=True)
    total_rewards = ma.fields.Integer(required=True)
    actual_rewards = ma.fields.Integer(required=True)
    difference = ma.fields.Integer(required=True)
    currencies = ma.fields.List(ma.fields.String(), required=True)


class StatementLine(ma.Schema):
    date = ma.fields.String(required=True, metadata={"format": "date-time"})
    kind = ma.fields.String(
        required=True,
        metadata={
            "description": "reward, reversal, matured, rejected, payout, payout_paid, "
            "payout_failed, payout_reversed"
        },
    )
    currency = ma.fields.String(required=True)
    amount = ma.fields.Integer(
        required=True, metadata={"description": "signed change of pending + available + paid"}
    )
    pending = ma.fields.Integer(required=True)
    available = ma.fields.Integer(required=True)
    paid = ma.fields.Integer(required=True)
    purchase_id = ma.fields.String(allow_none=True)
    content_id = ma.fields.String(allow_none=True)
    content_title = ma.fields.String(allow_none=True)
    level = ma.fields.Integer(allow_none=True)
    state = ma.fields.String(allow_none=True)
    reward_id = ma.fields.String(allow_none=True)
    payout_id = ma.fields.String(allow_none=True)
    transaction_id = ma.fields.Integer(required=True)


class StatementBalance(ma.Schema):
    currency = ma.fields.String(required=True)
    pending = ma.fields.Integer(required=True)
    available = ma.fields.Integer(required=True)
    paid = ma.fields.Integer(required=True)


class StatementOut(ma.Schema):
    fan_id = ma.fields.String(required=True)
    handle = ma.fields.String(required=True)
    start = ma.fields.String(data_key="from", attribute="from", allow_none=True)
    end = ma.fields.String(data_key="to", attribute="to", allow_none=True)
    lines = ma.fields.List(ma.fields.Nested(StatementLine), required=True)
    opening = ma.fields.List(ma.fields.Nested(StatementBalance), required=True)
    closing = ma.fields.List(ma.fields.Nested(StatementBalance), required=True)
    totals = ma.fields.List(
        ma.fields.Nested(StatementBalance),
        required=True,
        metadata={"description": "balances over the whole history (the balance endpoint's)"},
    )
