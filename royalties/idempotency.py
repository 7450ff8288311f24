"""Idempotency keys (SPEC section 8; Stripe's and the IETF draft's semantics).

- ``begin()`` claims ``(client, key)`` in its own short transaction, committed before the
  work starts, so a concurrent duplicate finds the claim: same body -> 409 while in
  flight, the first response replayed once done; different body -> 422.
- The work's own transaction calls ``complete()`` to store the response, so the record
  turns ``done`` exactly when the effects commit; a crash leaves nothing half-done.
- A request that fails calls ``abandon()``: its effects were rolled back, so the claim is
  released and the client may correct the body and retry under the same key.
- A claim left ``in_flight`` by a crashed process is taken over after ``STALE_AFTER``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from royalties.db import insert_or_ignore, table, utcnow
from royalties.errors import (
    IdempotencyInFlight,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
)
from royalties.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
STALE_AFTER = timedelta(minutes=5)
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    record_id: int


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


def begin(
    session: Session,
    *,
    client_id: str,
    key: str | None,
    scope: str,
    request_hash: str,
    now: datetime | None = None,
) -> Replay | Claim:
    """Claim the key for this request, or say what to answer instead. Commits."""
    key = check_key(key)
    now = now or utcnow()
    try:
        if session.get_bind().dialect.name == "postgresql":
            # Losing this row in a server crash only loses a claim, never money.
            session.execute(text("SET LOCAL synchronous_commit = off"))
        for _attempt in range(_CLAIM_ATTEMPTS):
            inserted = session.execute(
                insert_or_ignore(session, IdempotencyRecord)
                .values(
                    client_id=client_id,
                    key=key,
                    scope=scope,
                    request_hash=request_hash,
                    state="in_flight",
                    created_at=now,
                )
                .returning(IdempotencyRecord.id)
            ).scalar()
            if inserted is not None:
                session.commit()
                return Claim(inserted)
            record = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.client_id == client_id, IdempotencyRecord.key == key
                )
            ).one_or_none()
            if record is None:
                continue  # the holder failed and released the key in between: claim it again
            outcome = _judge(session, record, scope, request_hash, now)
            session.commit()
            return outcome
        raise IdempotencyInFlight("a request with this Idempotency-Key is still being processed")
    except BaseException:
        session.rollback()
        raise


def _judge(
    session: Session, record: IdempotencyRecord, scope: str, request_hash: str, now: datetime
) -> Replay | Claim:
    if record.scope != scope or record.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request; use a new key"
        )
    if record.state == "done":
        assert record.response_status is not None and record.response_body is not None
        return Replay(record.response_status, record.response_body)
    if record.created_at < now - STALE_AFTER:
        taken = session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == record.id,
                IdempotencyRecord.state == "in_flight",
                IdempotencyRecord.created_at == record.created_at,
            )
            .values(created_at=now)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return Claim(record.id)
    raise IdempotencyInFlight("a request with this Idempotency-Key is still being processed")


def complete(session: Session, claim: Claim, status: int, body: dict[str, Any]) -> None:
    """Store the response in the work's transaction (does not commit)."""
    session.connection().execute(
        update(table(IdempotencyRecord))
        .where(IdempotencyRecord.id == claim.record_id)
        .values(state="done", response_status=status, response_body=body)
    )


def abandon(session: Session, claim: Claim) -> None:
    """Release the claim of a request that failed and wrote nothing. Commits."""
    session.rollback()
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id == claim.record_id, IdempotencyRecord.state == "in_flight"
        )
    )
    session.commit()
