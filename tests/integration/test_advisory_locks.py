"""One way to make advisory locks (``royalties.db.advisory_lock``): transaction-scoped,
exclusive or shared, waiting or trying, keyed by a name of string parts."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from royalties.db import advisory_lock, lock_key


def test_a_lock_key_is_a_stable_64_bit_integer_that_tells_names_apart():
    key = lock_key("payout", "fan_1", "USD")
    assert key == lock_key("payout", "fan_1", "USD")
    assert -(2**63) <= key < 2**63
    assert len({key, lock_key("payout", "fan_1", "EUR"), lock_key("payout", "fan_1USD")}) == 3
    # Parts are kept apart whatever they contain.
    assert lock_key("a", "b,c") != lock_key("a,b", "c")


def test_on_sqlite_the_write_transaction_is_the_lock(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's answer")
    with engine.begin() as conn:
        assert advisory_lock(conn, "x", wait=False)


@pytest.mark.postgres
def test_an_exclusive_lock_keeps_others_out_until_its_transaction_ends(engine):
    with engine.connect() as first, engine.connect() as second:
        first.begin()
        assert advisory_lock(first, "payout", "fan_1", "USD")
        second.begin()
        assert not advisory_lock(second, "payout", "fan_1", "USD", wait=False)
        assert not advisory_lock(second, "payout", "fan_1", "USD", shared=True, wait=False)
        assert advisory_lock(second, "payout", "fan_2", "USD", wait=False)
        first.commit()
        assert advisory_lock(second, "payout", "fan_1", "USD", wait=False)
        second.rollback()


@pytest.mark.postgres
def test_shared_locks_share_and_keep_an_exclusive_one_out(engine):
    with engine.connect() as first, engine.connect() as second:
        first.begin()
        assert advisory_lock(first, "graph", "reroot", shared=True)
        second.begin()
        assert advisory_lock(second, "graph", "reroot", shared=True, wait=False)
        second.rollback()
        second.begin()
        assert not advisory_lock(second, "graph", "reroot", wait=False)
        second.rollback()
        first.rollback()
        held = first.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))
        assert held.scalar() == 0
