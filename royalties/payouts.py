"""The payout state machine (SPEC section 6): claim, send, settle — exactly once.

Invariants, in plain words:

- A payout is *claimed* before Stripe hears of it: in one committed transaction the
  payout row is inserted and its amount moves ``fan_available -> payout_clearing``.
  The claim holds a per-(fan, currency) lock (advisory on PostgreSQL; SQLite serialises
  writers) and re-reads the balance under it, and a partial unique index allows one
  open payout per fan and currency, so two runs can never claim the same money.
- The transfer is created with the payout id as Stripe's idempotency key and with
  parameters that depend only on the stored payout (amount, currency, destination,
  ``transfer_group`` = the run that claimed it). A retry, by any later run, therefore
  replays the same transfer and can never make a second one.
- Outcomes: success -> ``paid`` (clearing -> ``fan_paid``); a definite refusal ->
  ``failed`` (clearing -> ``fan_available``); an ambiguous failure (timeout, 5xx) stays
  ``submitted`` for the next run to retry with the same key, never released.
- Every state change is a conditional UPDATE from the expected state, so concurrent
  settlers move the money once; each change writes an audit event.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from royalties import ledger
from royalties.db import utcnow
from royalties.errors import PaymentDeclined, PaymentUncertain
from royalties.ids import new_id
from royalties.models import Fan, LedgerAccount, LedgerEntry, Payout, PayoutEvent
from royalties.models.payouts import OPEN_STATES
from royalties.payments.stripe import StripeGateway, TransferInfo

CLEARING = "payout_clearing"


def _lock_fan_currency(session: Session, fan_id: str, currency: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"payout:{fan_id}:{currency}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def audit(
    session: Session, payout_id: str, from_state: str | None, to_state: str, detail: str
) -> None:
    session.add(
        PayoutEvent(
            payout_id=payout_id, from_state=from_state, to_state=to_state, detail=detail[:500]
        )
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


def claim(
    session: Session, *, run_id: str, candidate: Candidate, min_payout: int, now: datetime
) -> Payout | None:
    """Claim the fan's whole available balance as a new ``pending`` payout. Does not commit.

    Returns None when, under the lock, there is already an open payout or the balance
    is below the minimum (another run got there first, or a refund came in)."""
    _lock_fan_currency(session, candidate.fan_id, candidate.currency)
    open_one = session.scalar(
        select(Payout.id).where(
            Payout.fan_id == candidate.fan_id,
            Payout.currency == candidate.currency,
            Payout.state.in_(OPEN_STATES),
        )
    )
    if open_one is not None:
        return None
    available = ledger.balance(session, "fan_available", candidate.fan_id, candidate.currency)
    if available < min_payout:
        return None
    payout = Payout(
        id=new_id("po"),
        run_id=run_id,
        fan_id=candidate.fan_id,
        currency=candidate.currency,
        amount=available,
        destination=candidate.destination,
        state="pending",
        reversed_amount=0,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(payout)
    session.flush()
    ledger.post(
        session,
        kind="payout",
        ref=payout.id,
        currency=payout.currency,
        lines=[
            ledger.Line("fan_available", payout.fan_id, -available),
            ledger.Line(CLEARING, ledger.PLATFORM, available),
        ],
    )
    audit(session, payout.id, None, "pending", f"claimed {available} {payout.currency}")
    return payout


def _move(
    session: Session,
    payout_id: str,
    from_states: Sequence[str],
    to_state: str,
    *,
    attempt: int | None = None,
    **values: Any,
) -> Payout | None:
    """Conditionally change state (and, given ``attempt``, only while no newer attempt
    has started); returns the payout if this caller made the change."""
    where = [Payout.id == payout_id, Payout.state.in_(from_states)]
    if attempt is not None:
        where.append(Payout.attempts == attempt)
    changed = session.execute(
        update(Payout)
        .where(*where)
        .values(state=to_state, updated_at=utcnow(), **values)
        .returning(Payout.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if changed is None:
        return None
    return session.get(Payout, payout_id, populate_existing=True)


@dataclass(frozen=True)
class Outcome:
    payout_id: str
    state: str
    detail: str


def send(session: Session, gateway: StripeGateway, payout_id: str) -> Outcome:
    """Send (or re-send, same key) one open payout to Stripe and settle what comes back.

    Commits: first that the payout is ``submitted`` (so a crash leaves it for retry),
    then its outcome."""
    payout = session.get(Payout, payout_id, populate_existing=True)
    if payout is None or payout.state not in OPEN_STATES:
        state = payout.state if payout else "missing"
        return Outcome(payout_id, state, "not open")
    previous, attempt = payout.state, payout.attempts + 1
    moved = _move(
        session, payout_id, OPEN_STATES, "submitted", attempt=payout.attempts, attempts=attempt
    )
    if moved is None:  # settled, or re-sent, by another run since we read it: not ours
        session.rollback()
        return Outcome(payout_id, "unknown", "changed by another run before sending")
    audit(session, payout_id, previous, "submitted", f"attempt {attempt}")
    session.commit()
    try:
        transfer = gateway.create_transfer(
            amount=payout.amount,
            currency=payout.currency,
            destination=payout.destination,
            transfer_group=payout.run_id,
            idempotency_key=payout.id,
            metadata={"payout_id": payout.id, "fan_id": payout.fan_id},
        )
    except PaymentUncertain as exc:
        audit(
            session,
            payout_id,
            "submitted",
            "submitted",
            f"outcome unknown, will retry: {exc.detail}",
        )
        session.commit()
        return Outcome(payout_id, "submitted", exc.detail)
    except PaymentDeclined as exc:
        return _fail(session, payout_id, f"declined by Stripe: {exc.detail}", attempt=attempt)
    return mark_paid(session, payout_id, transfer)


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
        ref=payout.id,
        currency=payout.currency,
        lines=[
            ledger.Line(CLEARING, ledger.PLATFORM, -payout.amount),
            ledger.Line(to_account, payout.fan_id, payout.amount),
        ],
    )
    audit(session, payout.id, "submitted", to_state, detail)
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
