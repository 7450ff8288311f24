"""``royalties.db.insert_rows``: the ledger's multi-row insert (JSON-carried on PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from royalties.db import insert_rows, insert_rows_returning, table, utcnow
from royalties.models import (
    IdempotencyRecord,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Purchase,
)
from royalties.models.events import Event

BIG = 10**12 * 9  # far beyond 32 bits: JSON must carry it exactly


def accounts(*ids):
    return [{"id": i, "kind": "fan_available", "owner_id": f"o{i}", "currency": "USD"} for i in ids]


def stored(session):
    return session.execute(
        select(LedgerAccount.id, LedgerAccount.owner_id).order_by(LedgerAccount.id)
    ).all()


def test_rows_arrive_whole_and_conflicts_are_skipped_only_when_asked(session):
    conn = session.connection()
    insert_rows(conn, table(LedgerAccount), accounts("a", "b"))
    insert_rows(conn, table(LedgerAccount), accounts("b", "c", "a", "d"), or_ignore=True)
    assert stored(session) == [("a", "oa"), ("b", "ob"), ("c", "oc"), ("d", "od")]
    with pytest.raises(IntegrityError):
        insert_rows(conn, table(LedgerAccount), accounts("e", "a"))
    session.rollback()


def test_nulls_quotes_and_large_integers_survive(session):
    conn = session.connection()
    odd = 'x"\\\u00e9\u2603'
    insert_rows(conn, table(LedgerAccount), accounts(odd, "b"))
    txn = conn.execute(
        insert(table(LedgerTransaction))
        .values(kind="k", ref="r", currency="USD", memo="", created_at=utcnow())
        .returning(LedgerTransaction.id)
    ).scalar_one()
    entries = [
        {
            "transaction_id": txn,
            "account_id": odd,
            "currency": "USD",
            "amount": BIG,
            "reward_id": None,
        },
        {
            "transaction_id": txn,
            "account_id": "b",
            "currency": "USD",
            "amount": -BIG,
            "reward_id": None,
        },
    ]
    insert_rows(conn, table(LedgerEntry), entries)
    got = session.execute(
        select(LedgerEntry.account_id, LedgerEntry.amount, LedgerEntry.reward_id).order_by(
            LedgerEntry.id
        )
    ).all()
    assert got == [(odd, BIG, None), ("b", -BIG, None)]
    session.rollback()


def test_nothing_to_insert_is_no_statement(session):
    insert_rows(session.connection(), table(LedgerAccount), [])
    assert stored(session) == []


def test_columns_it_cannot_carry_exactly_are_refused(session):
    floats = Table(
        "floats", MetaData(), Column("id", Integer, primary_key=True), Column("x", Float)
    )
    with pytest.raises(TypeError, match=r"cannot carry floats\.x"):
        insert_rows(session.connection(), floats, [{"id": 1, "x": 0.1}])
    # None in a JSON column: SQLAlchemy would store JSON null, the JSON path SQL NULL.
    with pytest.raises(TypeError, match="chain is None"):
        insert_rows(session.connection(), table(Purchase), [{"id": "p", "chain": None}])
    session.rollback()


def test_json_columns_are_stored_as_sqlalchemys_own_insert_stores_them(session):
    """To the stored text, nested floats, nulls, quotes and non-ASCII included; read back
    equal; through insert_rows_returning (PostgreSQL) as well."""
    conn = session.connection()
    value = {"a": 1.5, "b": [1, 'q"\u00e9\u2603', None], "c": {"d": 10**15}}
    row = {"client_id": "c", "scope": "s", "request_hash": "h", "state": "done"}
    row |= {"response_body": value, "created_at": utcnow()}
    insert_rows(conn, table(IdempotencyRecord), [{**row, "key": "mine"}])
    conn.execute(insert(table(IdempotencyRecord)), {**row, "key": "theirs"})
    if conn.dialect.name == "postgresql":
        returned = insert_rows_returning(
            conn, table(IdempotencyRecord), [{**row, "key": "back"}], "id", or_ignore=True
        )
        assert len(returned) == 1
    got = dict(
        conn.execute(text("SELECT key, CAST(response_body AS TEXT) FROM idempotency_records")).all()
    )
    assert got["mine"] == got["theirs"] == got.get("back", got["mine"])
    bodies = session.scalars(select(IdempotencyRecord.response_body)).all()
    assert bodies == [value] * len(got)
    session.rollback()


def test_utc_timestamps_and_booleans_come_back_exactly(session):
    from datetime import UTC, datetime, timedelta, timezone

    from royalties.models import Event

    at = datetime(2026, 12, 2, 6, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    rows = [
        {"id": "e1", "type": "t", "created_at": at, "body": "{}", "fanned_out": True},
        {"id": "e2", "type": "t", "created_at": utcnow(), "body": "{}", "fanned_out": False},
    ]
    insert_rows(session.connection(), table(Event), rows)
    got = session.execute(
        select(Event.id, Event.created_at, Event.fanned_out).order_by(Event.seq)
    ).all()
    assert got == [(r["id"], r["created_at"].astimezone(UTC), r["fanned_out"]) for r in rows]
    session.rollback()


def test_timestamps_and_defaults_are_stored_as_sqlalchemys_own_insert_stores_them(session):
    """The same row through insert_rows and through SQLAlchemy's INSERT: the same stored
    values, to the text of the timestamp (SQLite keeps timestamps as text), a whole
    second included; a column left out gets its Python default either way."""
    conn = session.connection()
    whole_second = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    in_paris = datetime(2026, 3, 1, 13, 0, 0, 250, tzinfo=timezone(timedelta(hours=1)))
    for n, at in enumerate((whole_second, in_paris)):
        row = {"kind": "k", "ref": f"mine-{n}", "currency": "USD", "created_at": at}
        insert_rows(conn, table(LedgerTransaction), [row])
        conn.execute(insert(table(LedgerTransaction)), {**row, "ref": f"theirs-{n}"})
    got = conn.execute(
        text("SELECT ref, memo, CAST(created_at AS TEXT) FROM ledger_transactions ORDER BY id")
    ).all()
    mine = [(memo, at) for ref, memo, at in got if ref.startswith("mine")]
    theirs = [(memo, at) for ref, memo, at in got if ref.startswith("theirs")]
    assert mine == theirs and mine[0][0] == ""
    stamps = session.scalars(select(LedgerTransaction.created_at).order_by(LedgerTransaction.id))
    assert list(stamps) == [whole_second, whole_second, in_paris, in_paris]

    before = utcnow()
    event = {"id": "evt_x", "type": "fan.enrolled", "body": "{}"}  # created_at, fanned_out
    insert_rows(conn, table(Event), [event])
    stored = session.execute(select(Event.created_at, Event.fanned_out)).one()
    assert stored.fanned_out is False and before <= stored.created_at <= utcnow()
    session.rollback()


def test_a_naive_timestamp_is_refused(session):
    row = {"kind": "k", "ref": "r", "currency": "USD", "created_at": datetime(2026, 1, 1)}
    with pytest.raises((ValueError, StatementError), match="naive"):
        insert_rows(session.connection(), table(LedgerTransaction), [row])
    session.rollback()
