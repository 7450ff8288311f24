"""Insights for artists: influence analytics (cached), program return, the plan
simulator, and fans' lifetime values. The maths is ``royalties.insights``'s; this
module reads the rows it needs and caches the result.

- Never on the purchase path: computed on demand and kept per artist in
  ``insights_cache``; recomputed when forced, when older than ``max_age``, or when the
  artist's sales changed (their count, or the total refunded: a refund changes every
  figure without adding a purchase).
- The reads run in one transaction, ended before the computation starts: on SQLite
  every transaction holds the write lock; on PostgreSQL the reads share one REPEATABLE
  READ snapshot, so sales, rewards and fans agree with each other and with the count
  the cache is stamped with.
- The database adds the sales up (per stored chain, per buyer, per day: see
  :func:`_load_summary`); no sale is read into Python. At 1M fans and 2M sales that
  is a third of the time and memory of reading every sale (``bench/insights.py``).
- Ancestors are found by following ``fans.sponsor_id`` upwards, a batch of fans per
  query, so the graph holds every involved fan's whole upline up to its root.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, String, Text, case, cast, func, literal_column, select
from sqlalchemy.orm import Session

from royalties import insights, rewards
from royalties.db import utcnow
from royalties.errors import ValidationFailed
from royalties.insights import Sale
from royalties.models import Fan, InsightsCache, Purchase, Reward
from royalties.plans import DEFAULT_HOLD_DAYS, validate_plan
from royalties.services._tx import unit_of_work
from royalties.services.catalog import get_artist
from royalties.services.fans import get_fan

_BATCH = 2000  # ids per IN (...): well under SQLite's bound parameter limit
_ROWS = 10_000  # rows fetched at a time by the batch reads
_SOURCE = "_source"  # what the cached figures were computed from; never returned
# Bumped when the figures' shape changes, so a cache of the old shape is recomputed.
_SHAPE = 2


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A batch read and analysis builds millions of objects and frees few: CPython's
    cycle collector would walk them again and again as they pile up (a third of the
    time of ``program_return`` at 1M fans, ``bench/insights.py``). Paused meanwhile;
    the objects are reference counted as ever, and cycles wait for the next run."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def artist_insights(
    session: Session,
    artist_id: str,
    *,
    now: datetime | None = None,
    max_age: timedelta = timedelta(minutes=10),
    force: bool = False,
    top: int = 20,
) -> dict[str, Any]:
    """The artist's graph, top fans, program return, daily series and network picture.

    Served from the cache unless stale (see the module docstring); a recomputation is
    stored. Raises NotFound for an unknown artist. Ends any open transaction."""
    now = now or utcnow()
    _snapshot(session)
    get_artist(session, artist_id)
    count, refunded = _fingerprint(session, artist_id)
    cached = session.get(InsightsCache, artist_id, populate_existing=True)
    if (
        not force
        and cached is not None
        and cached.purchase_count == count
        and cached.data.get(_SOURCE) == {"refunded": refunded, "top": top, "shape": _SHAPE}
        and now - cached.computed_at <= max_age
    ):
        data = _public(cached.data)
        session.rollback()
        return data

    with _collector_paused():
        summary = _load_summary(session, artist_id)
        rewards_by_fan = _rewards_by_fan(session, artist_id)
        sponsors, handles = _load_uplines(session, summary.fans)
        session.rollback()

        found = insights.analyse(
            summary, sponsors, handles=handles, rewards_by_fan=rewards_by_fan, top=top
        )
        data = {
            "artist_id": artist_id,
            "computed_at": now.isoformat(),
            "graph": found["graph"],
            "top": found["top"],
            "roi": insights.return_figures(summary.totals, summary.currencies),
            "series": insights.daily_series(summary),
            "picture": found["picture"],
        }
        del summary, rewards_by_fan, sponsors, handles, found
    source = {"refunded": refunded, "top": top, "shape": _SHAPE}
    _store(session, artist_id, now, count, {**data, _SOURCE: source})
    return data


def program_return(
    session: Session,
    artist_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Attributed vs direct revenue and the cost of rewards for the artist's sales
    recorded in [start, end); revenue is net of refunds, rewards net of reversals (see
    ``royalties.insights.program_return``). Naive datetimes are taken as UTC."""
    start, end = _period(start, end)
    _snapshot(session)
    get_artist(session, artist_id)
    days, currencies = _day_totals(session, _sales_of(artist_id, start, end))
    session.rollback()
    totals = insights.added(days.values())
    return insights.return_figures(totals, currencies, start=start, end=end)


def simulate(session: Session, artist_id: str, level_rates_bps: list[int]) -> dict[str, Any]:
    """What ``level_rates_bps`` would have paid on every recorded sale of the artist,
    per level, against the rewards actually booked (both gross of refunds). Touches no
    ledger. Raises PlanError for a plan SPEC section 4 refuses, NotFound for an unknown
    artist."""
    validate_plan(level_rates_bps, DEFAULT_HOLD_DAYS)
    _snapshot(session)
    get_artist(session, artist_id)
    with _collector_paused():
        sales = _load_chains(session, artist_id)
        actual = _rewards_total(session, rewards.counted(), _sales_of(artist_id))
        session.rollback()
        return insights.simulate_plan(sales, level_rates_bps, actual_rewards=actual)


def fan_lifetime_value(session: Session, fan_id: str) -> int:
    """Net value of the fan's own purchases plus every purchase it brought in, at any
    level of a stored chain, across all artists (minor units of every currency added
    up). Raises NotFound for an unknown fan."""
    get_fan(session, fan_id)
    # The chain is JSON: a text match narrows the rows, membership is checked below.
    rows = session.execute(
        select(Purchase.buyer_id, Purchase.amount, Purchase.refunded_amount, Purchase.chain).where(
            (Purchase.buyer_id == fan_id)
            | cast(Purchase.chain, String).contains(f'"{fan_id}"', autoescape=True)
        )
    ).all()
    session.rollback()
    return sum(
        amount - refunded
        for buyer, amount, refunded, chain in rows
        if buyer == fan_id or fan_id in chain
    )


# -- reading --------------------------------------------------------------------------


def _snapshot(session: Session) -> None:
    """Start a fresh read transaction; on PostgreSQL one snapshot for all its reads."""
    session.rollback()
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _period(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    start = start.replace(tzinfo=UTC) if start and start.tzinfo is None else start
    end = end.replace(tzinfo=UTC) if end and end.tzinfo is None else end
    if start is not None and end is not None and start > end:
        raise ValidationFailed("from is after to", fields={"to": ["must not be before from"]})
    return start, end


def _fingerprint(session: Session, artist_id: str) -> tuple[int, int]:
    count, refunded = session.execute(
        select(func.count(), func.coalesce(func.sum(Purchase.refunded_amount), 0)).where(
            Purchase.artist_id == artist_id
        )
    ).one()
    return int(count), int(refunded)


def _load_summary(session: Session, artist_id: str) -> insights.Summary:
    """The artist's sales added up as ``insights.summarise`` adds them up, by the
    database: no sale is read into Python (2M sales at the target size come back as a
    few hundred thousand chains, a row per buyer and a row per day).

    Chains are grouped by their stored text, decoded once each into tuples of shared
    fan ids (``_ChainCache``); a buyer holding a position in its sale's chain is found
    by a text match on the quoted id (ids never hold a quote) and grouped apart."""
    sales = _sales_of(artist_id)
    net = Purchase.amount - Purchase.refunded_amount
    chain_text = cast(Purchase.chain, Text)
    quote: ColumnElement[str] = literal_column("'\"'", String)
    own = case(
        (_position(session, chain_text, quote + Purchase.buyer_id + quote) > 0, Purchase.buyer_id),
        else_=None,
    )
    connection = session.connection()
    fans = _ChainCache()
    chains = [
        insights.ChainSales(fans.get(text), own_fan and fans.fan(own_fan), int(total), n, best)
        for part in connection.execute(
            select(chain_text, own, func.sum(net), func.count(), func.min(_cascade_key(session)))
            .where(*sales, func.json_array_length(Purchase.chain) > 0)
            .group_by(chain_text, own)
        ).partitions(_ROWS)
        for text, own_fan, total, n, best in part
    ]
    spent = {
        fans.fan(buyer): int(total)
        for part in connection.execute(
            select(Purchase.buyer_id, func.sum(net)).where(*sales).group_by(Purchase.buyer_id)
        ).partitions(_ROWS)
        for buyer, total in part
    }
    days, currencies = _day_totals(session, sales)
    return insights.Summary(chains, spent, days, currencies)


def _day_totals(
    session: Session, sales: list[ColumnElement[bool]]
) -> tuple[dict[date, insights.Totals], set[str]]:
    """``insights.Totals`` per UTC day of the ``sales`` (a :func:`_sales_of`), and their
    currencies: a scan of the sales and one of their rewards, summed by the database."""
    day = _day_text(session, Purchase.created_at)
    net = Purchase.amount - Purchase.refunded_amount
    kept = case((Purchase.refunded_amount < Purchase.amount, 1), else_=0)
    attributed = func.json_array_length(Purchase.chain) > 0
    figures: dict[date, list[int]] = {}
    currencies: set[str] = set()
    for text, currency, *sums in session.execute(
        select(
            day,
            Purchase.currency,
            func.sum(case((attributed, net), else_=0)),
            func.sum(case((attributed, 0), else_=net)),
            func.sum(case((attributed, kept), else_=0)),
            func.sum(case((attributed, 0), else_=kept)),
        )
        .where(*sales)
        .group_by(day, Purchase.currency)
    ):
        currencies.add(currency)
        row = figures.setdefault(date.fromisoformat(text), [0, 0, 0, 0, 0])  # as Totals
        for place, value in zip((0, 1, 3, 4), sums, strict=True):
            row[place] += int(value)
    for text, rewarded in session.execute(
        select(day, func.sum(rewards.counted_net()))
        .join_from(Purchase, Reward, Reward.purchase_id == Purchase.id)
        .where(*sales)
        .group_by(day)
    ):
        figures[date.fromisoformat(text)][2] += int(rewarded)
    return {key: insights.Totals(*row) for key, row in sorted(figures.items())}, currencies


def _load_sales(
    session: Session,
    artist_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Sale]:
    """The artist's sales in [start, end), each with its reward sums, one by one.

    No batch run reads this: the insights read :func:`_load_summary`, which adds up in
    the database what ``insights.summarise`` adds up over these sales (the tests hold
    the two to the same answers). Core tuples, not ORM rows; the chain read as text and
    decoded once per distinct chain; the timestamp read as ISO 8601 text (the column
    holds naive UTC) and parsed by ``datetime.fromisoformat``."""
    period = _sales_of(artist_id, start, end)
    rows = session.connection().execute(
        select(
            Purchase.id,
            Purchase.buyer_id,
            Purchase.amount,
            cast(Purchase.chain, Text),
            _iso_text(session, Purchase.created_at),
            Purchase.refunded_amount,
            _per_sale(rewards.counted()),
            _per_sale(rewards.counted_reversed()),
            Purchase.currency,
        ).where(*period)
    )
    chains = _ChainCache()  # one string per fan id, however many sales name it
    parse = datetime.fromisoformat
    sales = []
    for purchase_id, buyer, amount, chain_text, at, refunded, paid, back, currency in (
        row
        for part in rows.partitions(_ROWS)
        for row in part  # fetchmany, not row by row
    ):
        sales.append(
            Sale(
                purchase_id,
                chains.fan(buyer),
                amount,
                chains.get(chain_text),
                parse(at + "+00:00"),  # aware UTC, without a slow ``replace(tzinfo=)``
                refunded,
                int(paid),
                int(back),
                currency,
            )
        )
    return sales


_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _load_chains(session: Session, artist_id: str) -> list[Sale]:
    """The artist's sales as the simulator reads them: amount, buyer, stored chain and
    currency only (id and time left blank, no reward sums: a third of the cost of
    :func:`_load_sales`)."""
    rows = session.connection().execute(
        select(
            Purchase.buyer_id, Purchase.amount, cast(Purchase.chain, Text), Purchase.currency
        ).where(*_sales_of(artist_id))
    )
    chains = _ChainCache()
    return [
        Sale("", chains.fan(buyer), amount, chains.get(chain_text), _NO_TIME, currency=currency)
        for part in rows.partitions(_ROWS)
        for buyer, amount, chain_text, currency in part
    ]


class _ChainCache:
    """Stored chains decoded once per distinct text (many buyers share a sponsor's
    chain) into tuples of shared fan id strings."""

    def __init__(self) -> None:
        self._fans: dict[str, str] = {}
        self._chains: dict[str | None, tuple[str, ...]] = {None: ()}

    def fan(self, fan_id: str) -> str:
        return self._fans.setdefault(fan_id, fan_id)

    def get(self, text: str | None) -> tuple[str, ...]:
        chain = self._chains.get(text)
        if chain is None:
            fans = self._fans
            chain = tuple([fans.setdefault(fan, fan) for fan in json.loads(text or "[]") or ()])
            self._chains[text] = chain
        return chain


def _sales_of(
    artist_id: str, start: datetime | None = None, end: datetime | None = None
) -> list[ColumnElement[bool]]:
    """SQL: the artist's sales recorded in [start, end)."""
    period = [Purchase.artist_id == artist_id]
    if start is not None:
        period.append(Purchase.created_at >= start)
    if end is not None:
        period.append(Purchase.created_at < end)
    return period


def _rewards_total(
    session: Session, counted: ColumnElement[Any], sales: list[ColumnElement[bool]]
) -> int:
    """The sum of ``counted`` over every reward of the ``sales`` (a :func:`_sales_of`)."""
    total = session.scalar(
        select(func.coalesce(func.sum(counted), 0))
        .join_from(Purchase, Reward, Reward.purchase_id == Purchase.id)
        .where(*sales)
    )
    return int(total or 0)


def _per_sale(counted: Any) -> Any:
    """SQL: the sum of ``counted`` over one sale's rewards. Correlated subqueries walk
    the (purchase_id, level) index sale by sale; a join with GROUP BY sorted every
    reward row first and took a third longer on SQLite."""
    total = select(func.coalesce(func.sum(counted), 0)).where(Reward.purchase_id == Purchase.id)
    return total.scalar_subquery()


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _position(session: Session, text: Any, part: Any) -> Any:
    """SQL: where ``part`` first occurs in ``text``, from 1; 0 when it does not."""
    return func.strpos(text, part) if _postgres(session) else func.instr(text, part)


def _day_text(session: Session, column: Any) -> Any:
    """SQL: the UTC day of a naive UTC timestamp as ``YYYY-MM-DD``."""
    if _postgres(session):
        return func.to_char(column, "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # the text SQLite stores


def _cascade_key(session: Session) -> Any:
    """SQL: ``insights.cascade_key`` of a sale (the same string, so the same order)."""
    complement: ColumnElement[int] = literal_column(str(insights.MAX_NET)) - (
        Purchase.amount - Purchase.refunded_amount
    )
    if _postgres(session):
        digits: ColumnElement[str] = func.lpad(cast(complement, Text), 19, "0", type_=String)
        moment: ColumnElement[str] = func.to_char(
            Purchase.created_at, "YYYY-MM-DD HH24:MI:SS.US", type_=String
        )
    else:
        digits = func.printf("%019d", complement, type_=String)
        moment = cast(Purchase.created_at, Text)  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'
    return digits + moment + Purchase.id


def _iso_text(session: Session, column: Any) -> Any:
    """SQL: a naive timestamp as ISO 8601 text. SQLite stores that text already;
    PostgreSQL's own ``::text`` follows the DateStyle setting, ``to_char`` does not."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS.US')
    return cast(column, Text)


def _rewards_by_fan(session: Session, artist_id: str) -> dict[str, int]:
    return {
        fan_id: int(total)
        for fan_id, total in session.execute(
            select(Reward.fan_id, func.sum(rewards.counted_net()))
            .join(Purchase, Purchase.id == Reward.purchase_id)
            .where(Purchase.artist_id == artist_id)
            .group_by(Reward.fan_id)
        )
    }


def _batches(ids: Iterable[str]) -> Iterator[list[str]]:
    it = iter(sorted(ids))
    while batch := list(islice(it, _BATCH)):
        yield batch


def _load_uplines(
    session: Session, fans: Iterable[str]
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Sponsor and handle of every fan in ``fans`` and of all their ancestors."""
    sponsors: dict[str, str | None] = {}
    handles: dict[str, str] = {}
    wanted = set(fans)
    while wanted:
        for batch in _batches(wanted):
            for fan_id, sponsor_id, handle in session.execute(
                select(Fan.id, Fan.sponsor_id, Fan.handle).where(Fan.id.in_(batch))
            ):
                sponsors[fan_id] = sponsor_id
                handles[fan_id] = handle
        wanted = {s for s in sponsors.values() if s is not None and s not in sponsors}
    return sponsors, handles


# -- the cache ------------------------------------------------------------------------


def _public(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != _SOURCE}


def _store(
    session: Session, artist_id: str, now: datetime, count: int, data: dict[str, Any]
) -> None:
    """Insert or replace the artist's cached figures (the last writer wins)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    values = {"computed_at": now, "purchase_count": count, "data": data}
    statement = dialect.insert(InsightsCache).values(artist_id=artist_id, **values)
    with unit_of_work(session):
        session.execute(statement.on_conflict_do_update(index_elements=["artist_id"], set_=values))


# -- refreshing in the background ---------------------------------------------------------


def stale_artists(session: Session, *, limit: int = 20) -> list[str]:
    """Artists with sales whose cached figures are missing or no longer match their sales
    (another count, or another total refunded): the ones a read would recompute. Ends
    the read's transaction."""
    sales = (
        select(
            Purchase.artist_id,
            func.count().label("n"),
            func.coalesce(func.sum(Purchase.refunded_amount), 0).label("refunded"),
        )
        .group_by(Purchase.artist_id)
        .subquery()
    )
    cached_refunded = InsightsCache.data[(_SOURCE, "refunded")].as_integer()
    cached_shape = InsightsCache.data[(_SOURCE, "shape")].as_integer()
    rows = session.scalars(
        select(sales.c.artist_id)
        .outerjoin(InsightsCache, InsightsCache.artist_id == sales.c.artist_id)
        .where(
            (InsightsCache.artist_id.is_(None))
            | (InsightsCache.purchase_count != sales.c.n)
            | (cached_refunded.is_(None))
            | (cached_refunded != sales.c.refunded)
            | (cached_shape.is_(None))
            | (cached_shape != _SHAPE)
        )
        .order_by(sales.c.artist_id)
        .limit(limit)
    ).all()
    session.rollback()
    return list(rows)


def refresh_stale(session: Session, *, now: datetime | None = None, limit: int = 20) -> int:
    """Recompute and cache the figures of up to ``limit`` stale artists (see
    :func:`stale_artists`), so the next page read is served from the cache. Returns how
    many were refreshed. Commits each one."""
    refreshed = 0
    for artist_id in stale_artists(session, limit=limit):
        artist_insights(session, artist_id, now=now, force=True)
        refreshed += 1
    return refreshed
