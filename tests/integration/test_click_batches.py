"""Clicks written in batches (``royalties.clicks``) on a real database: what is queued is
written in one round, only while its link was active; a failed round keeps the clicks
for the next; the writer's thread writes on its own; link targets are kept for their
time and a disabled link never is."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from royalties.clicks import BatchedClicks, ClickWriter, LinkTargets
from royalties.db import utcnow
from royalties.models import Click, ShareLink
from royalties.services import links


@pytest.fixture
def codes(build):
    """Three active links of one item, sold at https://shop.test/song."""
    item, fan = build.content(build.artist()), build.fan()
    return [build.link(fan, item.id) for _ in range(3)]


def clicks_of(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(Click.code, func.count()).group_by(Click.code))
        return dict(rows.all())


def click(code, agent="ua"):
    return links.click_row(code, "hash", agent)


def disable(engine, code, at):
    with engine.begin() as conn:
        conn.execute(
            update(ShareLink).where(ShareLink.code == code).values(active=False, disabled_at=at)
        )


def test_queued_clicks_are_written_in_one_round_while_their_link_was_active(engine, codes):
    first, second, third = codes
    writer = ClickWriter(engine, interval=3600)  # no round of its own during the test
    before = click(second)
    for code in (first, first, second, third):
        writer.add(click(code))
    disable(engine, second, utcnow())  # after `before` and the queued click were counted
    late = click(second)
    late["at"] = utcnow() + timedelta(seconds=1)
    writer.add(before)
    writer.add(late)
    writer.add(click("zzzzzzzzzz"))  # no such link: nothing to count it for
    assert clicks_of(engine) == {}
    assert writer.flush() == 5
    assert clicks_of(engine) == {first: 2, second: 2, third: 1}
    assert writer.pending == 0 and writer.flush() == 0
    writer.close()


def test_a_failed_round_keeps_the_clicks_and_a_full_queue_drops_the_oldest(engine, codes, caplog):
    first, second, _ = codes
    writer = ClickWriter(engine, interval=3600, max_pending=3)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE clicks RENAME TO clicks_away"))
    writer.add(click(first, "one"))
    writer.add(click(first, "two"))
    with caplog.at_level(logging.ERROR, logger="royalties.clicks"):
        assert writer.flush() == 0
        assert writer.pending == 2
        writer.add(click(second, "three"))
        writer.add(click(second, "four"))
        assert writer.flush() == 0  # four waiting, room for three: "one" goes
    assert writer.pending == 3
    assert "dropped the 1 oldest unwritten clicks" in caplog.text
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE clicks_away RENAME TO clicks"))
    assert writer.flush() == 3
    with engine.connect() as conn:
        agents = conn.scalars(select(Click.user_agent).order_by(Click.id)).all()
    assert agents == ["two", "three", "four"]
    writer.close()


def test_the_writers_thread_writes_each_interval_and_what_is_left_at_close(engine, codes):
    first, second, _ = codes
    clicks = BatchedClicks(engine, interval=0.05, cache_seconds=60)
    for _ in range(5):
        assert clicks.follow(first, "hash", "ua") == f"https://shop.test/song?ref={first}"
    deadline = time.monotonic() + 10
    while clicks_of(engine).get(first) != 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert clicks_of(engine) == {first: 5}
    assert clicks.follow("not a code", "hash", "ua") is None
    assert clicks.follow("zzzzzzzzzz", "hash", "ua") is None
    slow = BatchedClicks(engine, interval=3600, cache_seconds=60)
    slow.follow(second, "hash", "ua")
    slow.writer.close()  # what a stopping process does: stop the thread, write the rest
    assert clicks_of(engine) == {first: 5, second: 1}
    clicks.writer.close()


def test_a_link_target_is_kept_for_its_time_and_a_disabled_link_is_asked_again(engine, codes):
    first, second, _ = codes
    now = [0.0]
    reads: list[str] = []

    def read(code):
        reads.append(code)
        with engine.connect() as conn:
            return links.link_target(conn, code)

    targets = LinkTargets(read, ttl=5, max_entries=1, clock=lambda: now[0])
    assert targets.get(first) == f"https://shop.test/song?ref={first}"
    now[0] = 4.9
    assert targets.get(first) is not None and reads == [first]  # kept
    disable(engine, first, utcnow())
    assert targets.get(first) is not None  # still kept: another process disabled it
    now[0] = 5.0
    assert targets.get(first) is None and reads == [first, first]  # time up: asked again
    assert targets.get(first) is None and reads == [first, first, first]  # never kept
    assert targets.get(second) is not None
    targets.forget(second)  # this process disabled it
    assert targets.get(second) is not None and reads[-2:] == [second, second]
    assert targets.get("zzzzzzzzzz") is None
    assert targets.get(second) is not None and reads[-1] == "zzzzzzzzzz"  # kept: no read
    assert targets.get(codes[2]) is not None  # room for one: the oldest entry makes room
    assert targets.get(second) is not None and reads[-2:] == [codes[2], second]
