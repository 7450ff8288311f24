"""The read that opens a request (the API key's lookup) and the write lock on SQLite.

Every SQLite transaction of the engine takes the write lock up front (``BEGIN
IMMEDIATE``), except ``royalties.db.first_read``'s: a key lookup that waited for the
lock would hold it, once taken, for the whole request. These tests hold the lock from
another connection and show the lookup neither waits for it nor leaves a transaction
behind; and that a lookup inside a transaction (and any lookup on PostgreSQL) stays in
it.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from royalties import keys
from royalties.db import first_read, make_sessionmaker
from royalties.models import ApiKey


@pytest.fixture
def key(session: Session) -> str:
    plain = keys.issue_key(session, "admin", None)
    session.commit()
    return plain


def _sqlite_path(engine: Engine) -> str:
    if engine.dialect.name != "sqlite":
        pytest.skip("the write lock is SQLite's")
    assert engine.url.database
    return engine.url.database


def test_a_key_lookup_neither_waits_for_a_writer_nor_keeps_a_transaction(
    engine: Engine, key: str
) -> None:
    writer = sqlite3.connect(_sqlite_path(engine), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's write transaction, left open
    found: list[Any] = []
    with make_sessionmaker(engine)() as session:
        lookup = threading.Thread(
            target=lambda: found.append((keys.authenticate(session, key), session.in_transaction()))
        )
        lookup.start()
        lookup.join(timeout=10)  # waiting for the lock would take the busy timeout, 30 s
        alive = lookup.is_alive()
        writer.rollback()
        lookup.join()
    assert not alive, "the key lookup waited for another connection's write lock"
    principal, in_transaction = found[0]
    assert principal is not None and principal.role == "admin"
    assert in_transaction is False


def test_the_work_after_the_lookup_takes_the_write_lock(engine: Engine, key: str) -> None:
    path = _sqlite_path(engine)
    with make_sessionmaker(engine)() as session:
        assert keys.authenticate(session, key) is not None
        session.execute(select(ApiKey.id))  # the request's work: its own transaction
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        session.rollback()
        other.execute("BEGIN IMMEDIATE")  # released with the work's transaction
        other.rollback()


def test_a_lookup_inside_a_transaction_stays_in_it(session: Session, key: str) -> None:
    other_key = keys.issue_key(session, "admin", None)
    session.flush()  # written, not committed: this transaction's
    assert keys.authenticate(session, other_key) is not None
    assert session.in_transaction()
    assert keys.authenticate(session, key) is not None
    session.rollback()
    assert keys.authenticate(session, other_key) is None  # it was never committed


def test_elsewhere_the_first_read_opens_the_sessions_transaction(session: Session) -> None:
    with first_read(session) as conn:
        conn.execute(select(ApiKey.id)).all()
    sqlite = session.get_bind().dialect.name == "sqlite"
    assert session.in_transaction() is not sqlite
