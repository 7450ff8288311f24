"""SQLite writers queue for the write lock (royalties.writer_queue).

Each write transaction of the engine holds an exclusive ``flock`` of ``<db>-writers``
from just before its ``BEGIN IMMEDIATE`` to its end. These tests look at that lock from
outside (a descriptor of their own, which ``flock`` treats as another holder) and from
other processes: held while a transaction writes, free after commit, rollback, close
or a dropped connection; a bounded wait; a forked child holding nothing of its parent;
processes taking turns without losing a write.
"""

from __future__ import annotations

import fcntl
import gc
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from royalties.db import first_read, make_engine, make_sessionmaker
from royalties.writer_queue import WRITERS_SUFFIX, QueuedConnection, queue_for


@pytest.fixture
def path(engine: Engine) -> str:
    if engine.dialect.name != "sqlite":
        pytest.skip("the writer queue is SQLite's")
    assert engine.url.database
    return engine.url.database


def _queue_is_free(path: str) -> bool:
    """Whether another holder could take the queue now."""
    fd = os.open(path + WRITERS_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing it releases a lock it took
    return True


def _stays_free(path: str) -> bool:
    """Free now and still free a moment later (a holder that takes the lock for an
    instant, such as a keeper letting go of a turn nobody waits for, has let go)."""
    if not _queue_is_free(path):
        return False
    time.sleep(0.05)
    return _queue_is_free(path)


def _assert_refused_soon(impatient: Engine) -> None:
    """A write through ``impatient`` (a busy timeout of 0.3 s) fails as SQLite's own
    timeout fails, long before a wait without a bound would have been noticed."""
    started = time.monotonic()
    with (
        pytest.raises(OperationalError, match="database is locked"),
        impatient.begin() as conn,
    ):
        conn.execute(text("UPDATE queue_counter SET n = n + 1"))
    assert time.monotonic() - started < 10


@pytest.fixture
def counter(engine: Engine, path: str) -> Engine:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS queue_counter (n INTEGER NOT NULL)"))
        conn.execute(text("DELETE FROM queue_counter"))
        conn.execute(text("INSERT INTO queue_counter VALUES (0)"))
    return engine


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_a_write_transaction_holds_the_queue_until_it_ends(
    counter: Engine, path: str, end: str
) -> None:
    assert _queue_is_free(path)
    session = make_sessionmaker(counter)()
    session.execute(text("UPDATE queue_counter SET n = n + 1"))
    assert not _queue_is_free(path)
    getattr(session, end)()
    assert _queue_is_free(path)


def test_a_read_of_its_own_does_not_queue(engine: Engine, path: str) -> None:
    with make_sessionmaker(engine)() as session, first_read(session) as conn:
        conn.execute(text("SELECT 1"))
        assert _queue_is_free(path)


def test_a_writer_waits_at_most_the_busy_timeout_then_fails_as_sqlite_would(
    counter: Engine, path: str
) -> None:
    impatient = make_engine(f"sqlite:///{path}", connect_args={"timeout": 0.3})
    holder = os.open(path + WRITERS_SUFFIX, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's writer, mid-transaction
    try:
        _assert_refused_soon(impatient)
    finally:
        os.close(holder)
    # The writer that gave up is not left holding the queue (its keeper thread, still
    # waiting when it gave up, takes the lock and lets go of it), and the next one gets it.
    # The keeper's one take comes at any moment after the release, even between two of
    # these looks: free must stay free.
    deadline = time.monotonic() + 5
    while not _stays_free(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _stays_free(path)
    with impatient.begin() as conn:
        conn.execute(text("UPDATE queue_counter SET n = n + 1"))
    assert _queue_is_free(path)
    impatient.dispose()


def test_a_second_connection_of_the_same_thread_does_not_wait_for_itself(
    counter: Engine, path: str
) -> None:
    impatient = make_engine(f"sqlite:///{path}", connect_args={"timeout": 0.3})
    with impatient.begin() as first:
        first.execute(text("UPDATE queue_counter SET n = n + 1"))
        # Not a wait in the queue for a turn this thread holds, which would never come:
        # SQLite's own lock refuses it after the busy timeout.
        _assert_refused_soon(impatient)
        assert not _queue_is_free(path)  # still the first transaction's
    assert _queue_is_free(path)
    impatient.dispose()


def test_a_connection_dropped_without_close_leaves_the_queue(path: str) -> None:
    queue = queue_for(path)
    conn = sqlite3.connect(path, factory=QueuedConnection, isolation_level=None)
    conn.writer_queue = queue
    assert queue.join(conn, 5)
    conn.execute("BEGIN IMMEDIATE")
    assert not _queue_is_free(path)
    del conn
    gc.collect()
    assert _queue_is_free(path)


def _child_after_fork(path: str, results: Any) -> None:
    queue = queue_for(path)
    results.put(("holder", queue._holder))
    impatient = make_engine(f"sqlite:///{path}", connect_args={"timeout": 0.3})
    try:
        with impatient.begin() as conn:
            conn.execute(text("UPDATE queue_counter SET n = n + 1"))
        results.put(("wrote", True))
    except OperationalError:
        results.put(("wrote", False))


def test_a_forked_child_holds_nothing_of_its_parents_queue(counter: Engine, path: str) -> None:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    with counter.begin() as conn:
        conn.execute(text("UPDATE queue_counter SET n = n + 1"))
        child = context.Process(target=_child_after_fork, args=(path, results))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        # The child waited for the parent's turn (and gave up): it did not inherit it.
        assert dict([results.get(timeout=5), results.get(timeout=5)]) == {
            "holder": None,
            "wrote": False,
        }
        assert not _queue_is_free(path)  # the child's exit released nothing of ours
    assert _queue_is_free(path)


def _increment(path: str, times: int) -> None:
    engine = make_engine(f"sqlite:///{path}")
    for _ in range(times):
        with engine.begin() as conn:
            n = conn.execute(text("SELECT n FROM queue_counter")).scalar_one()
            # Every write transaction holds the queue, however it got its turn (at once,
            # or through the keeper thread while another process wrote).
            if _queue_is_free(path):
                raise AssertionError("a writer's transaction ran without holding the queue")
            conn.execute(text("UPDATE queue_counter SET n = :n"), {"n": n + 1})
    engine.dispose()


@pytest.fixture
def spawn() -> Iterator[Any]:
    yield multiprocessing.get_context("spawn")


def test_processes_take_turns_and_lose_no_write(counter: Engine, path: str, spawn: Any) -> None:
    workers = [spawn.Process(target=_increment, args=(path, 200)) for _ in range(3)]
    for worker in workers:
        worker.start()
    _increment(path, 200)  # and this process's threads' queue next to theirs
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with counter.connect() as conn:
        assert conn.execute(text("SELECT n FROM queue_counter")).scalar_one() == 800
    assert _queue_is_free(path)
