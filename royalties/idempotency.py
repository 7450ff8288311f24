"""Idempotency keys (SPEC section 8; Stripe's and the IETF draft's semantics).

The key is claimed inside the work's own transaction, so the record and the work's
effects commit (or vanish) together, in one commit:

- ``claim()`` runs first in that transaction. On PostgreSQL it takes a transaction-scoped
  advisory lock on ``(client, key)`` without waiting and reads the key's record in the
  same statement: lock held elsewhere -> the first request is still in flight -> 409;
  a record with the same request -> its response is replayed; with another request ->
  422; no record -> go on. On SQLite every write transaction holds the database's write
  lock (``BEGIN IMMEDIATE``), so a duplicate simply runs after the first and replays it.
- ``complete()`` inserts the record, ``done`` with the result, just before the commit.
  The record is the result (the response body); how it is answered over HTTP (its
  status) is the API's business.
  The unique ``(client, key)`` constraint backs the lock: a duplicate that slipped past
  it (it read just before the first committed) inserts nothing and answers 409, and its
  work is rolled back with the rest of its transaction.
- A request that fails rolls back and leaves no record: the client may correct the body
  and retry under the same key.
- Records ``in_flight`` come only from versions that committed the claim separately: a
  fresh one answers 409, one older than ``STALE_AFTER`` (its process died) is replaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from royalties.db import (
    advisory_lock_sql,
    insert_or_ignore,
    insert_rows_returning,
    lock_key,
    table,
    utcnow,
)
from royalties.errors import (
    IdempotencyError,
    IdempotencyInFlight,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
)
from royalties.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
STALE_AFTER = timedelta(minutes=5)
_IN_FLIGHT = "a request with this Idempotency-Key is still being processed"


@dataclass(frozen=True)
class Replay:
    """The key already has a result: the response recorded the first time."""

    body: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """Leave to run the work under this key, in the transaction that claimed it."""

    client_id: str
    key: str
    scope: str
    request_hash: str
    created_at: datetime


def fingerprint(scope: str, body: Any) -> str:
    canonical = json.dumps([scope, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise IdempotencyKeyMissing("this request needs an 'Idempotency-Key' header")
    if len(key) > MAX_KEY_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise IdempotencyKeyMissing(
            f"the Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters"
        )
    return key


def claim(
    session: Session,
    *,
    client_id: str,
    key: str | None,
    scope: str,
    request_hash: str,
    now: datetime | None = None,
) -> Replay | Claim:
    """Claim the key in the session's transaction (call it first), or say what to answer
    instead. Does not commit: the caller's work commits the claim with its effects, and
    a ``Replay`` or an exception should be followed by a rollback."""
    key = check_key(key)
    now = now or utcnow()
    conn = session.connection()
    params = {"client_id": client_id, "key": key, "lock": lock_key("idempotency", client_id, key)}
    row = conn.execute(_lookup(conn.dialect.name), params).one()
    return _decide(conn, row, row.free, client_id, key, scope, request_hash, now)


def once(
    session: Session,
    work: Callable[[Claim], dict[str, Any]],
    *,
    client_id: str,
    key: str | None,
    scope: str,
    request_hash: str,
) -> tuple[dict[str, Any], bool]:
    """Claim the key and run ``work`` under the claim (``work`` completes and commits),
    or replay the key's recorded result: ``(result, replayed)``. A failed claim or a
    replay ends the transaction the lookup opened."""
    try:
        outcome = claim(
            session, client_id=client_id, key=key, scope=scope, request_hash=request_hash
        )
    except BaseException:
        session.rollback()
        raise
    if isinstance(outcome, Replay):
        session.rollback()  # nothing to run
        return outcome.body, True
    return work(outcome), False


def claim_many(
    session: Session,
    *,
    client_id: str,
    requests: Sequence[tuple[str, str, str]],
    now: datetime | None = None,
) -> list[Replay | Claim | IdempotencyError]:
    """``claim`` for several ``(key, scope, request_hash)`` at once, in two statements
    whatever their number (a batch of sales): for each, in order, the claim, the
    replay, or the error ``claim`` would have raised. The keys must differ from each
    other. Does not commit."""
    now = now or utcnow()
    decided: list[Replay | Claim | IdempotencyError | None] = [None] * len(requests)
    keys: dict[str, int] = {}  # key -> its request's place
    for place, (key, _scope, _hash) in enumerate(requests):
        if key in keys:
            raise ValueError(f"claim_many: the key {key!r} is given twice")
        try:
            keys[check_key(key)] = place
        except IdempotencyError as error:
            decided[place] = error
    conn = session.connection()
    rows = {
        row.key: row
        for row in conn.execute(
            _records(conn.dialect.name), {"client_id": client_id, "keys": list(keys)}
        )
    }
    free = dict.fromkeys(keys, True)
    if conn.dialect.name == "postgresql" and keys:
        # The same locks as ``claim`` takes, in one statement; SQLite holds the write lock.
        ordered = list(keys)
        locks = [lock_key("idempotency", client_id, key) for key in ordered]
        taken = conn.execute(_TRY_LOCKS, {"locks": locks}).scalars().all()
        free = dict(zip(ordered, taken, strict=True))
    for key, place in keys.items():
        _key, scope, request_hash = requests[place]
        try:
            decided[place] = _decide(
                conn, rows.get(key), free[key], client_id, key, scope, request_hash, now
            )
        except IdempotencyError as error:
            decided[place] = error
    return [outcome for outcome in decided if outcome is not None]


@cache
def _records(dialect: str) -> Select[Any]:
    """A client's records of the keys ``:keys``. On PostgreSQL the keys go as one array:
    an ``IN`` of 500 placeholders is a statement text of its own each time, which the
    driver parses anew and the server plans anew."""
    record = table(IdempotencyRecord)
    if dialect == "postgresql":
        keys = record.c.key == any_(bindparam("keys", type_=postgresql.ARRAY(String)))
    else:
        keys = record.c.key.in_(bindparam("keys", expanding=True))
    return select(record).where(record.c.client_id == bindparam("client_id"), keys)


def _try_locks() -> Select[Any]:
    """Each lock of ``:locks`` (an array) tried as ``claim`` tries one, in order."""
    locks = (
        func.unnest(bindparam("locks", type_=postgresql.ARRAY(BigInteger)))
        .table_valued("lock", with_ordinality="place")
        .render_derived(name="t")
    )
    return select(advisory_lock_sql(locks.c.lock, wait=False)).order_by(locks.c.place)


_TRY_LOCKS = _try_locks()


def _decide(
    conn: Connection,
    row: Any,
    free: bool,
    client_id: str,
    key: str,
    scope: str,
    request_hash: str,
    now: datetime,
) -> Replay | Claim:
    """What a key's record (``row``, None or all-NULL when there is none) and its lock
    say about this request: run it (a ``Claim``), replay, or an error."""
    if not free:
        raise IdempotencyInFlight(_IN_FLIGHT)
    if row is not None and row.id is not None:
        if row.scope != scope or row.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request; use a new key"
            )
        if row.state == "done":
            return Replay(row.response_body)
        if row.created_at >= now - STALE_AFTER:
            raise IdempotencyInFlight(_IN_FLIGHT)
        # An abandoned claim of an older version's crashed process: this request takes over.
        conn.execute(
            delete(table(IdempotencyRecord)).where(
                IdempotencyRecord.id == row.id, IdempotencyRecord.state == "in_flight"
            )
        )
    return Claim(client_id, key, scope, request_hash, now)


@cache
def _lookup(dialect: str) -> Select[Any]:
    """One row: ``free`` (the key's lock was free and is now ours) and the key's record,
    all NULL when there is none."""
    record = table(IdempotencyRecord)
    if dialect == "postgresql":
        # The lock in the lookup's own statement: one round trip on every purchase.
        free: Any = advisory_lock_sql(bindparam("lock", type_=BigInteger), wait=False)
    else:
        free = literal(True)  # SQLite: this transaction already holds the write lock
    one = select(literal(1).label("one")).subquery()
    return select(
        free.label("free"),
        record.c.id,
        record.c.scope,
        record.c.request_hash,
        record.c.state,
        record.c.response_body,
        record.c.created_at,
    ).select_from(
        one.outerjoin(
            record,
            and_(record.c.client_id == bindparam("client_id"), record.c.key == bindparam("key")),
        )
    )


def complete(session: Session, claim: Claim, body: dict[str, Any]) -> None:
    """Record the work's result (the response body) under the claimed key, in the work's
    transaction, last thing before its commit (does not commit). Raises
    ``IdempotencyInFlight`` if a duplicate committed first; the caller's transaction
    must then roll back."""
    complete_all(session, [(claim, body)])


def complete_all(session: Session, results: Sequence[tuple[Claim, dict[str, Any]]]) -> None:
    """``complete`` for several claims in one statement; ``IdempotencyInFlight`` when
    any of them was processed meanwhile (then none may be kept: roll back)."""
    if not results:
        return
    conn = session.connection()
    rows = record_rows(results)
    stored: Sequence[Any]
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        # One JSON parameter: a multi-row VALUES of a batch's 3,500 placeholders is
        # parsed anew by the driver and the server on every call.
        stored = insert_rows_returning(conn, table(IdempotencyRecord), rows, "id", or_ignore=True)
    else:
        stored = conn.execute(_record(conn.dialect.name), rows).all()
    check_completed(len(stored), len(results))


def record_rows(results: Sequence[tuple[Claim, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The idempotency records ``complete_all`` writes (insert-or-ignore: a record there
    already means a duplicate was processed meanwhile)."""
    return [
        {
            "client_id": claim.client_id,
            "key": claim.key,
            "scope": claim.scope,
            "request_hash": claim.request_hash,
            "state": "done",
            "response_body": body,
            "created_at": claim.created_at,
        }
        for claim, body in results
    ]


def check_completed(stored: int, claimed: int) -> None:
    """``IdempotencyInFlight`` unless every claimed key's record was written."""
    if stored != claimed:
        raise IdempotencyInFlight("a request with this Idempotency-Key was processed meanwhile")


@cache
def _record(dialect: str) -> Any:
    return insert_or_ignore(dialect, table(IdempotencyRecord)).returning(IdempotencyRecord.id)
