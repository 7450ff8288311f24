"""A replay finds where ``since`` starts without an index on ``created_at``: a binary
search over ``seq``. Against the real database: with ``created_at`` lagging behind the
write order by up to ``CLOCK_LAG`` and gaps in ``seq``, the search never cuts off an
event at or after ``since`` (brute force says which), and on ordered times it starts at
exactly the first event of ``since - CLOCK_LAG``, not at the table's start."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from sqlalchemy import delete, select

from royalties import events
from royalties.models import Event
from royalties.webhooks.endpoints import CLOCK_LAG, first_seq_since

BASE = datetime(2026, 11, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)


def write(session, times: list[datetime]) -> list[tuple[int, datetime]]:
    whose = events.Whose(storefront_id="sto_x")
    events.record_all(
        session,
        [events.Pending("purchase.recorded", {"n": i}, whose, at) for i, at in enumerate(times)],
    )
    session.commit()
    return [tuple(row) for row in session.execute(select(Event.seq, Event.created_at))]


def sinces() -> list[datetime]:
    return [BASE + k * STEP / 3 for k in range(-6, 3 * 210)]


def test_an_empty_table_starts_at_zero(session):
    assert first_seq_since(session, BASE) == 0


def test_lagging_times_and_gaps_never_cut_off_an_event_since(session):
    rng = random.Random(14)
    times = [BASE + i * STEP - rng.random() * CLOCK_LAG * 0.95 for i in range(200)]
    rows = write(session, times)
    gone = [seq for seq, _ in rows[5::7]]  # gaps, as rolled-back inserts leave them
    session.execute(delete(Event).where(Event.seq.in_(gone)))
    session.commit()
    rows = [row for row in rows if row[0] not in gone]
    assert any(a > b for (_, a), (_, b) in pairwise(rows)), "times must be out of order"

    narrowed = 0
    for since in sinces():
        start = first_seq_since(session, since)
        wanted = {seq for seq, at in rows if at >= since}
        assert wanted <= {seq for seq, _ in rows if seq >= start}, since
        narrowed += start > rows[0][0]
    assert narrowed > len(sinces()) * 0.8  # it does skip the old events, most of the time


def test_ordered_times_start_at_the_first_event_of_since_less_the_lag(session):
    rows = write(session, [BASE + i * STEP for i in range(100)])
    for since in sinces():
        start = first_seq_since(session, since)
        newer = [seq for seq, at in rows if at >= since - CLOCK_LAG]
        assert start == (newer[0] if newer else rows[-1][0] + 1), since
