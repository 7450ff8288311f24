"""Pooled PostgreSQL connections that die: pinged when idle, recovered when busy.

``royalties.db.make_engine`` pings a pooled connection only when it sat idle (not before
every request); these tests kill the server side of a pooled connection, as a server
restart or an idle-connection reaper would, and check what the next users see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from royalties.db import make_engine
from tests.conftest import admin_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin() -> Iterator[Engine]:
    eng = admin_engine()
    yield eng
    eng.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(admin: Engine, pid: int) -> None:
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        for _ in range(100):  # until the server has let the backend go
            gone = not conn.execute(
                text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).first()
            if gone:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} still there")


def _count_pings(engine: Engine) -> list[int]:
    """Counts the engine's pings (the dialect's own ping still runs)."""
    calls = [0]
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        calls[0] += 1
        return real_ping(dbapi_connection)

    engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    return calls


def test_an_idle_connection_that_died_is_replaced_before_use(db_url: str, admin: Engine) -> None:
    engine = make_engine(db_url, pool_size=1, idle_ping_seconds=0.05)
    pings = _count_pings(engine)
    try:
        first = _backend_pid(engine)
        _kill(admin, first)
        time.sleep(0.1)  # idle for longer than the engine's threshold
        second = _backend_pid(engine)  # would raise if handed the dead connection
        assert second != first
        assert pings == [1]
        assert _backend_pid(engine) == second  # the replacement is pooled and reused
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(db_url: str) -> None:
    engine = make_engine(db_url, pool_size=1, idle_ping_seconds=60)
    pings = _count_pings(engine)
    try:
        pids = {_backend_pid(engine) for _ in range(5)}
        assert len(pids) == 1  # one pooled connection, reused
        assert pings == [0]
    finally:
        engine.dispose()


def test_a_busy_connection_that_died_fails_once_then_the_pool_reconnects(
    db_url: str, admin: Engine
) -> None:
    engine = make_engine(db_url, pool_size=2, idle_ping_seconds=60)
    try:
        first = _backend_pid(engine)
        _kill(admin, first)
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        with engine.connect() as conn:  # the pool dropped the dead connection
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
    finally:
        engine.dispose()
