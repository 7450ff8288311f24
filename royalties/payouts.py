"""The payout state machine (SPEC section 6): claim, send, settle — exactly once.

Invariants, in plain words:

- A payout is *claimed* before Stripe hears of it: in one committed transaction the
  payout row is inserted and its amount moves ``fan_available -> payout_clearing``.
  The claim holds a per-(fan, currency) lock (advisory on PostgreSQL; SQLite serialises
  writers) and re-reads the balance under it, and a partial unique index allows one
  open payout per fan and currency, so two runs can never claim the same money.
- Stripe is called only once the payout is committed ``submitted`` for that attempt. A
  fresh claim is committed already ``submitted`` (attempt 1): claim and first send are
  one commit, and the audit trail records both steps (``pending``, then ``submitted``).
  A retry moves an open payout to ``submitted`` for a new attempt, and commits, first.
- The transfer is created with the payout id as Stripe's idempotency key and with
  parameters that depend only on the stored payout (amount, currency, destination,
  ``transfer_group`` = the run that claimed it). A retry, by any later run, therefore
  replays the same transfer and can never make a second one.
- Outcomes: success -> ``paid`` (clearing -> ``fan_paid``); a definite refusal ->
  ``failed`` (clearing -> ``fan_available``); an ambiguous failure (timeout, 5xx) stays
  ``submitted`` for the next run to retry with the same key, never released.
- Every state change is a conditional UPDATE from the expected state, so concurrent
  settlers move the money once; each change writes an audit event.

Cost: a payout is two short transactions around its Stripe call, each a handful of
indexed single-row statements (Core, on the session's connection), whatever the number
of payouts already made.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from royalties import ledger
from royalties.db import table, utcnow
from royalties.errors import PaymentDeclined, PaymentUncertain
from royalties.ids import new_id
from royalties.models import Fan, LedgerAccount, LedgerEntry, Payout, PayoutEvent
from royalties.models.payouts import OPEN_STATES
from royalties.payments.stripe import StripeGateway, TransferInfo

CLEARING = "payout_clearing"

# Built once: a run executes these once or twice per payout.
_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_INSERT_PAYOUT = insert(table(Payout))
_INSERT_EVENTS = insert(table(PayoutEvent))
# Under the claim's lock, in one round trip: an open payout of the fan in the currency,
# and the fan's available balance there (the sum of its entries, as ledger.balance).
_OPEN_PAYOUT_AND_AVAILABLE = select(
    select(Payout.id)
    .where(
        Payout.fan_id == bindparam("fan_id"),
        Payout.currency == bindparam("currency"),
        Payout.state.in_(OPEN_STATES),
    )
    .limit(1)
    .scalar_subquery(),
    ledger.balance_of(bindparam("account_id")),
)


def _lock_fan_currency(session: Session, fan_id: str, currency: str) -> None:
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"payout:{fan_id}:{currency}".encode())
        conn.execute(_LOCK, {"k": key})


def audit(
    session: Session, payout_id: str, from_state: str | None, to_state: str, detail: str
) -> None:
    _audit(session, (payout_id, from_state, to_state, detail))


def _audit(session: Session, *events: tuple[str, str | None, str, str]) -> None:
    """Write audit events, in order (their ids order a payout's trail). Does not commit."""
    at = utcnow()
    session.connection().execute(
        _INSERT_EVENTS,
        [
            {
                "payout_id": payout_id,
                "at": at,
                "from_state": from_state,
                "to_state": to_state,
                "detail": detail[:500],
            }
            for payout_id, from_state, to_state, detail in events
        ],
    )


@dataclass(frozen=True)
class Candidate:
    fan_id: str
    currency: str
    destination: str
    available: int


def candidates(session: Session, min_payout: int) -> list[Candidate]:
    """Fans whose available balance in a currency is at least ``min_payout`` and whose
    connected account can receive payouts (negative or small balances never qualify)."""
    total = func.sum(LedgerEntry.amount)
    rows = session.execute(
        select(LedgerAccount.owner_id, LedgerAccount.currency, Fan.stripe_account_id, total)
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(Fan, Fan.id == LedgerAccount.owner_id)
        .where(
            LedgerAccount.kind == "fan_available",
            Fan.payouts_enabled.is_(True),
            Fan.stripe_account_id.is_not(None),
        )
        .group_by(LedgerAccount.owner_id, LedgerAccount.currency, Fan.stripe_account_id)
        .having(total >= min_payout)
        .order_by(LedgerAccount.owner_id, LedgerAccount.currency)
    ).all()
    return [Candidate(fan, cur, str(dest), int(avail)) for fan, cur, dest, avail in rows]


@dataclass(frozen=True)
class Attempt:
    """What one attempt sends: the stored payout's transfer parameters, and its number."""

    payout_id: str
    run_id: str
    fan_id: str
    currency: str
    amount: int
    destination: str
    attempt: int


# The columns an attempt is made of, in Attempt's field order.
_ATTEMPT_COLUMNS = (
    Payout.id,
    Payout.run_id,
    Payout.fan_id,
    Payout.currency,
    Payout.amount,
    Payout.destination,
    Payout.attempts,
)


def _attempt(row: Sequence[Any]) -> Attempt:
    payout_id, run_id, fan_id, currency, amount, destination, attempts = row
    return Attempt(payout_id, run_id, fan_id, currency, int(amount), destination, attempts)


def claim(
    session: Session, *, run_id: str, candidate: Candidate, min_payout: int, now: datetime
) -> Attempt | None:
    """Claim the fan's whole available balance as a new payout, stored ``submitted``
    for its first attempt, which the caller makes once this is committed (``send_claimed``).
    Does not commit.

    Returns None when, under the lock, there is already an open payout or the balance
    is below the minimum (another run got there first, or a refund came in)."""
    _lock_fan_currency(session, candidate.fan_id, candidate.currency)
    conn = session.connection()
    # A statement sees what was committed when it started: read only once locked.
    open_one, total = conn.execute(
        _OPEN_PAYOUT_AND_AVAILABLE,
        {
            "fan_id": candidate.fan_id,
            "currency": candidate.currency,
            "account_id": ledger.account_id("fan_available", candidate.fan_id, candidate.currency),
        },
    ).one()
    available = int(total)
    if open_one is not None or available < min_payout:
        return None
    attempt = Attempt(
        payout_id=new_id("po"),
        run_id=run_id,
        fan_id=candidate.fan_id,
        currency=candidate.currency,
        amount=available,
        destination=candidate.destination,
        attempt=1,
    )
    conn.execute(
        _INSERT_PAYOUT,
        {
            "id": attempt.payout_id,
            "run_id": run_id,
            "fan_id": attempt.fan_id,
            "currency": attempt.currency,
            "amount": available,
            "destination": attempt.destination,
            "state": "submitted",
            "stripe_transfer_id": None,
            "reversed_amount": 0,
            "failure_reason": None,
            "attempts": 1,
            "created_at": now,
            "updated_at": now,
        },
    )
    ledger.post(
        session,
        kind="payout",
        ref=attempt.payout_id,
        currency=attempt.currency,
        lines=[
            ledger.Line("fan_available", attempt.fan_id, -available),
            ledger.Line(CLEARING, ledger.PLATFORM, available),
        ],
    )
    _audit(
        session,
        (attempt.payout_id, None, "pending", f"claimed {available} {attempt.currency}"),
        (attempt.payout_id, "pending", "submitted", "attempt 1"),
    )
    return attempt


def _move(
    session: Session,
    payout_id: str,
    from_states: Sequence[str],
    to_state: str,
    *,
    attempt: int | None = None,
    **values: Any,
) -> Attempt | None:
    """Conditionally change state (and, given ``attempt``, only while no newer attempt
    has started); returns the payout, as changed, if this caller made the change."""
    statement = _move_statement(tuple(from_states), to_state, attempt is not None, tuple(values))
    params = {f"new_{name}": value for name, value in values.items()}
    params.update(payout_id=payout_id, now=utcnow())
    if attempt is not None:
        params["attempt"] = attempt
    row = session.connection().execute(statement, params).first()
    return None if row is None else _attempt(row)


@cache
def _move_statement(
    from_states: tuple[str, ...], to_state: str, check_attempt: bool, columns: tuple[str, ...]
) -> Update:
    """The conditional UPDATE of ``_move``, built once per shape."""
    where = [Payout.id == bindparam("payout_id"), Payout.state.in_(from_states)]
    if check_attempt:
        where.append(Payout.attempts == bindparam("attempt"))
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in columns}
    return (
        update(Payout)
        .where(*where)
        .values(state=to_state, updated_at=bindparam("now"), **values)
        .returning(*_ATTEMPT_COLUMNS)
    )


@dataclass(frozen=True)
class Outcome:
    payout_id: str
    state: str
    detail: str


def send(session: Session, gateway: StripeGateway, payout_id: str) -> Outcome:
    """Re-send (same key) one open payout to Stripe and settle what comes back.

    Commits: first that the payout is ``submitted`` for a new attempt (so a crash leaves
    it for retry), then its outcome."""
    current = (
        session.connection()
        .execute(select(Payout.state, Payout.attempts).where(Payout.id == payout_id))
        .first()
    )
    if current is None or current.state not in OPEN_STATES:
        state = current.state if current else "missing"
        session.rollback()
        return Outcome(payout_id, state, "not open")
    previous, attempts = current.state, current.attempts
    moved = _move(
        session, payout_id, OPEN_STATES, "submitted", attempt=attempts, attempts=attempts + 1
    )
    if moved is None:  # settled, or re-sent, by another run since we read it: not ours
        session.rollback()
        return Outcome(payout_id, "unknown", "changed by another run before sending")
    audit(session, payout_id, previous, "submitted", f"attempt {moved.attempt}")
    session.commit()
    return send_claimed(session, gateway, moved)


def send_claimed(session: Session, gateway: StripeGateway, attempt: Attempt) -> Outcome:
    """Make one committed ``submitted`` attempt: call Stripe with the payout's key and
    settle what comes back. Commits the outcome."""
    try:
        transfer = gateway.create_transfer(
            amount=attempt.amount,
            currency=attempt.currency,
            destination=attempt.destination,
            transfer_group=attempt.run_id,
            idempotency_key=attempt.payout_id,
            metadata={"payout_id": attempt.payout_id, "fan_id": attempt.fan_id},
        )
    except PaymentUncertain as exc:
        audit(
            session,
            attempt.payout_id,
            "submitted",
            "submitted",
            f"outcome unknown, will retry: {exc.detail}",
        )
        session.commit()
        return Outcome(attempt.payout_id, "submitted", exc.detail)
    except PaymentDeclined as exc:
        return _fail(
            session,
            attempt.payout_id,
            f"declined by Stripe: {exc.detail}",
            attempt=attempt.attempt,
        )
    return mark_paid(session, attempt.payout_id, transfer)


def mark_paid(session: Session, payout_id: str, transfer: TransferInfo) -> Outcome:
    """The transfer exists: clearing -> ``fan_paid``. Commits."""
    return _settle(
        session,
        payout_id,
        "paid",
        "fan_paid",
        f"transfer {transfer.id}",
        stripe_transfer_id=transfer.id,
    )


def _fail(session: Session, payout_id: str, reason: str, *, attempt: int) -> Outcome:
    """Stripe definitely refused this attempt: clearing -> ``fan_available``. Commits.

    Only the latest attempt may give the money back: a newer one, sent by another run
    with the same key, may yet have succeeded."""
    return _settle(
        session,
        payout_id,
        "failed",
        "fan_available",
        reason,
        attempt=attempt,
        failure_reason=reason[:500],
    )


def _settle(
    session: Session,
    payout_id: str,
    to_state: str,
    to_account: str,
    detail: str,
    *,
    attempt: int | None = None,
    **values: Any,
) -> Outcome:
    """Close an open payout and move its money out of clearing, once, whoever calls."""
    payout = _move(session, payout_id, OPEN_STATES, to_state, attempt=attempt, **values)
    if payout is None:
        session.rollback()
        return Outcome(payout_id, "unknown", "already settled by another run")
    ledger.post(
        session,
        kind=f"payout_{to_state}",
        ref=payout.payout_id,
        currency=payout.currency,
        lines=[
            ledger.Line(CLEARING, ledger.PLATFORM, -payout.amount),
            ledger.Line(to_account, payout.fan_id, payout.amount),
        ],
    )
    audit(session, payout.payout_id, "submitted", to_state, detail)
    session.commit()
    return Outcome(payout_id, to_state, detail)


def apply_reversal(session: Session, transfer_id: str, amount_reversed: int) -> Payout | None:
    """A transfer was (partly) reversed at Stripe: return the newly reversed part to the
    fan's ``available`` balance. Idempotent: only the increase is moved. Does not commit."""
    payout = session.scalars(
        select(Payout).where(Payout.stripe_transfer_id == transfer_id).with_for_update()
    ).first()
    if payout is None:
        return None
    new_total = min(amount_reversed, payout.amount)
    delta = new_total - payout.reversed_amount
    if delta <= 0:
        return payout
    ledger.post(
        session,
        kind="payout_reversed",
        ref=payout.id,
        currency=payout.currency,
        lines=[
            ledger.Line("fan_paid", payout.fan_id, -delta),
            ledger.Line("fan_available", payout.fan_id, delta),
        ],
    )
    payout.reversed_amount = new_total
    payout.updated_at = utcnow()
    detail = f"transfer {transfer_id} reversed: {delta} back to available"
    if new_total == payout.amount:
        payout.state = "failed"
        payout.failure_reason = "transfer reversed at Stripe"
        audit(session, payout.id, "paid", "failed", detail)
    else:
        audit(session, payout.id, "paid", "paid", detail)
    return payout


def open_payout_ids(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(Payout.id).where(Payout.state.in_(OPEN_STATES)).order_by(Payout.created_at)
        )
    )
