"""What a fan earned, grouped as the fan page shows it: by level of the influence chain
and by content item. Every amount is counted as ``royalties.rewards`` counts a reward
(net of refunds; nothing for a rejected one), so these figures agree with the fan's
balance, statement and the artist's insights. ``over_time`` gives the same net per
period (a day, a week or a month, by how long the fan has earned) for the fan page's
chart."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import rewards
from royalties.models import Artist, Content, Purchase, Reward


def by_level(session: Session, fan_id: str) -> list[dict[str, Any]]:
    """Per currency and level: how many rewards, what they booked, what refunds took
    back, and the net."""
    rows = session.execute(
        select(
            Reward.currency,
            Reward.level,
            func.count(),
            func.sum(rewards.counted()),
            func.sum(rewards.counted_reversed()),
        )
        .where(Reward.fan_id == fan_id)
        .group_by(Reward.currency, Reward.level)
        .order_by(Reward.currency, Reward.level)
    ).all()
    return [
        {
            "currency": currency,
            "level": level,
            "rewards": int(count),
            "earned": int(earned or 0),
            "reversed": int(reversed_ or 0),
            "net": int(earned or 0) - int(reversed_ or 0),
        }
        for currency, level, count, earned, reversed_ in rows
    ]


def by_content(session: Session, fan_id: str) -> list[dict[str, Any]]:
    """Per content item (and currency): how many rewards and their net, largest first."""
    net = func.sum(rewards.counted_net())
    rows = session.execute(
        select(Content.id, Content.title, Artist.name, Reward.currency, func.count(), net)
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .join(Content, Content.id == Purchase.content_id)
        .join(Artist, Artist.id == Content.artist_id)
        .where(Reward.fan_id == fan_id)
        .group_by(Content.id, Content.title, Artist.name, Reward.currency)
        .order_by(net.desc(), Content.title)
    ).all()
    return [
        {
            "content_id": cid,
            "title": title,
            "artist": artist,
            "currency": currency,
            "rewards": int(count),
            "net": int(total or 0),
        }
        for cid, title, artist, currency, count, total in rows
    ]


# -- over time ----------------------------------------------------------------------------

DAY, WEEK, MONTH = "day", "week", "month"
# Up to two months of days; up to two years of weeks; else months: a year is 53 bars,
# not 365 slivers, and one day is one bar.
_DAYS_SHOWN, _WEEKS_SHOWN = 62, 104


@dataclass(frozen=True)
class ContentSeries:
    content_id: str
    title: str
    artist: str
    values: list[int]


@dataclass(frozen=True)
class EarningsSeries:
    """One currency's earnings per period (a day, week or month, UTC), first to last
    with quiet periods included: by level and by content item, each period's values in
    minor units. Both breakdowns add up to the same ``totals``."""

    currency: str
    grain: str
    periods: list[date]
    by_level: dict[int, list[int]]
    by_content: list[ContentSeries]
    totals: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.totals)


def over_time(session: Session, fan_id: str) -> list[EarningsSeries]:
    """What the fan earned over time, one series per currency (alphabetical).

    A reward counts on the day it was earned, for what it counts now (``counted_net``):
    a refund's reversal takes back from the day of the reward it reversed, a rejected
    reward counts nothing, a held one counts as it does in the pending balance. So each
    series' total equals the net of ``by_level`` in that currency."""
    rows = session.execute(
        select(
            Reward.currency,
            Reward.created_at,
            Reward.level,
            Content.id,
            Content.title,
            Artist.name,
            rewards.counted_net(),
        )
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .join(Content, Content.id == Purchase.content_id)
        .join(Artist, Artist.id == Content.artist_id)
        .where(Reward.fan_id == fan_id)
        .order_by(Reward.currency, Reward.created_at, Reward.id)
    ).all()
    by_currency: dict[str, list[_Earned]] = defaultdict(list)
    for currency, created_at, level, content_id, title, artist, net in rows:
        by_currency[currency].append(
            _Earned(_utc_day(created_at), level, (content_id, title, artist), int(net or 0))
        )
    return [_series(currency, earned) for currency, earned in sorted(by_currency.items())]


@dataclass(frozen=True)
class _Earned:
    day: date
    level: int
    content: tuple[str, str, str]
    net: int


def grain_for(first: date, last: date) -> str:
    """The period a span of days is charted in."""
    span = (last - first).days + 1
    if span <= _DAYS_SHOWN:
        return DAY
    return WEEK if span <= _WEEKS_SHOWN * 7 else MONTH


def period_of(day: date, grain: str) -> date:
    """The first day of the period ``day`` falls in (weeks start on Monday)."""
    if grain == WEEK:
        return day - timedelta(days=day.weekday())
    if grain == MONTH:
        return day.replace(day=1)
    return day


def periods_between(first: date, last: date, grain: str) -> list[date]:
    """Every period from the one of ``first`` to the one of ``last``, in order."""
    out, period = [], period_of(first, grain)
    while period <= last:
        out.append(period)
        if grain == MONTH:
            period = (period + timedelta(days=32)).replace(day=1)
        else:
            period += timedelta(days=7 if grain == WEEK else 1)
    return out


def _series(currency: str, earned: list[_Earned]) -> EarningsSeries:
    grain = grain_for(min(e.day for e in earned), max(e.day for e in earned))
    periods = periods_between(min(e.day for e in earned), max(e.day for e in earned), grain)
    index = {period: i for i, period in enumerate(periods)}
    levels: dict[int, list[int]] = {}
    content: dict[tuple[str, str, str], list[int]] = {}
    totals = [0] * len(periods)
    for e in earned:
        i = index[period_of(e.day, grain)]
        levels.setdefault(e.level, [0] * len(periods))[i] += e.net
        content.setdefault(e.content, [0] * len(periods))[i] += e.net
        totals[i] += e.net
    items = [ContentSeries(*key, values) for key, values in content.items()]
    items.sort(key=lambda s: (-sum(s.values), s.title, s.content_id))
    return EarningsSeries(currency, grain, periods, dict(sorted(levels.items())), items, totals)


def _utc_day(moment: datetime) -> date:
    # SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones.
    return (moment if moment.tzinfo is None else moment.astimezone(UTC)).date()
