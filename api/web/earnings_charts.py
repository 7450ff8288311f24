"""A fan's earnings over time as the fan page draws them: per currency, one stacked bar
chart by level (level 1: sales the fan brought in; 2 to 5: their upline share) and one
by content item, with the stacks and period labels the page's legend and table of
figures show. The drawing itself is ``api.web.charts``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from markupsafe import Markup

from api.web.charts import DEEPER, DEPTH_COLOURS, Formatter, depth_colour, stacked_bar_chart
from royalties.services.earnings import EarningsSeries

# Content items beyond these share one "other items" colour (DEEPER).
CONTENT_COLOURS = DEPTH_COLOURS[1:]


@dataclass(frozen=True)
class Stack:
    """One coloured part of every bar, with its total for the legend."""

    name: str
    colour: str
    values: list[int]

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True)
class EarningsChart:
    """One currency's earnings over time: a chart by level and one by content, the
    legends' stacks, and the period labels (for the table of figures)."""

    currency: str
    grain: str
    labels: list[str]
    totals: list[int]
    levels: list[Stack]
    content: list[Stack]
    by_level: Markup
    by_content: Markup

    @property
    def rows(self) -> list[tuple[str, list[int], int]]:
        """The table of figures: ``(period, per level, total)`` of each period in which
        something was earned or taken back (quiet periods are left out)."""
        out = []
        for i, label in enumerate(self.labels):
            per_level = [s.values[i] for s in self.levels]
            if any(per_level):
                out.append((label, per_level, self.totals[i]))
        return out


def period_label(period: date, grain: str) -> str:
    if grain == "month":
        return period.strftime("%Y-%m")
    return ("week of " if grain == "week" else "") + period.isoformat()


def earnings_chart(series: EarningsSeries, *, fmt: Formatter, width: int = 640) -> EarningsChart:
    """The fan page's charts of one ``royalties.services.earnings.over_time`` series."""
    labels = [period_label(p, series.grain) for p in series.periods]
    levels = [
        Stack(f"level {level}", depth_colour(level), values)
        for level, values in series.by_level.items()
    ]
    coloured = zip(series.by_content, CONTENT_COLOURS, strict=False)
    items = [Stack(s.title, colour, s.values) for s, colour in coloured]
    rest = series.by_content[len(CONTENT_COLOURS) :]
    if len(rest) == 1:
        items.append(Stack(rest[0].title, DEEPER, rest[0].values))
    elif rest:
        summed = [sum(column) for column in zip(*(s.values for s in rest), strict=True)]
        items.append(Stack(f"{len(rest)} other items", DEEPER, summed))
    per = series.grain
    cur = series.currency
    slug = cur.lower()

    def chart(stacks: list[Stack], what: str, key: str) -> Markup:
        return stacked_bar_chart(
            labels,
            [(s.name, s.colour, s.values) for s in stacks],
            chart_id=f"earnings-{key}-{slug}",
            title=f"Your earnings per {per} by {what} ({cur})",
            fmt=fmt,
            width=width,
        )

    return EarningsChart(
        cur,
        series.grain,
        labels,
        list(series.totals),
        levels,
        items,
        chart(levels, "level", "level"),
        chart(items, "content", "content"),
    )
