"""The payout state machine: a payout's states, and every transition between them.

A payout is inserted ``pending`` and moved to ``submitted`` for its first attempt in the
same transaction (the claim); it stays ``submitted`` while an attempt is out at Stripe
or its outcome is unresolved, and ends ``paid`` (the transfer exists) or ``failed``
(Stripe definitely refused the latest attempt). A paid payout whose transfer is reversed
at Stripe gives the reversed part back, and turns ``failed`` once wholly reversed. Every
change is a conditional UPDATE from the expected state, with an audit event.

This module reads, writes and asks Stripe, but never commits or rolls back: the use
cases (``runs``, ``reconcile``, ``webhooks``) own the transactions. Each function says
which boundary its caller must draw; in short:

- an attempt (``claim``, ``resend``) is committed before Stripe hears of it
  (``send_claimed``), so a crash leaves a ``submitted`` payout to look for, never a
  transfer the ledger does not know;
- no transaction is held open across a call to Stripe (``open_attempt`` only reads:
  its caller rolls back before going on);
- an outcome (``send_claimed``, ``settle_if_found``, ``mark_paid``) is committed once it
  is known, unless it is a lost race (``Outcome.lost_race``): another run changed the
  payout first and nothing was written, so the caller rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, insert, select, update
from sqlalchemy.orm import Session

from royalties import events, ledger
from royalties.db import advisory_lock, table, utcnow
from royalties.errors import PaymentDeclined, PaymentUncertain
from royalties.ids import new_id
from royalties.ledger import AccountKind
from royalties.models import Payout, PayoutEvent
from royalties.models.payouts import OPEN_STATES
from royalties.payments.stripe import StripeGateway, TransferInfo
from royalties.payouts.payable import Candidate
from royalties.payouts.view import payout_view

# How long the latest attempt may still be running at Stripe: until then a retry reuses
# its key (a concurrent one gets 409, a finished one its saved answer), after it a retry
# that found no transfer uses a new key. Far below the 24 hours Stripe keeps keys.
REKEY_AFTER = timedelta(minutes=2)
# Stripe's code for a platform balance that does not cover a transfer.
BALANCE_INSUFFICIENT = "balance_insufficient"
# The state an outcome reports when another run changed the payout first.
_LOST_RACE = "unknown"

# Built once: a run executes these once or twice per payout.
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
    advisory_lock(session.connection(), "payout", fan_id, currency)


def audit(
    session: Session, payout_id: str, from_state: str | None, to_state: str, detail: str
) -> None:
    """Write one audit event. The caller commits it with the change it records."""
    _audit(session, (payout_id, from_state, to_state, detail))


def _audit(session: Session, *events: tuple[str, str | None, str, str]) -> None:
    """Write audit events, in order (their ids order a payout's trail)."""
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
class Attempt:
    """What one attempt sends: the stored payout's transfer parameters, and its number."""

    payout_id: str
    run_id: str
    fan_id: str
    currency: str
    amount: int
    destination: str
    attempt: int
    key: str  # the Stripe idempotency key of this attempt


# The columns an attempt is made of, in Attempt's field order.
_ATTEMPT_COLUMNS = (
    Payout.id,
    Payout.run_id,
    Payout.fan_id,
    Payout.currency,
    Payout.amount,
    Payout.destination,
    Payout.attempts,
    Payout.stripe_key,
)


def _attempt(row: Sequence[Any]) -> Attempt:
    payout_id, run_id, fan_id, currency, amount, destination, attempts, key = row
    return Attempt(
        payout_id, run_id, fan_id, currency, int(amount), destination, attempts, key or payout_id
    )


@dataclass(frozen=True)
class Outcome:
    payout_id: str
    state: str
    detail: str
    code: str | None = None  # Stripe's error code, when Stripe refused or failed

    @property
    def lost_race(self) -> bool:
        """Another run changed the payout first: nothing was written for this outcome,
        so its caller rolls back instead of committing."""
        return self.state == _LOST_RACE


def claim(
    session: Session,
    *,
    run_id: str,
    candidate: Candidate,
    min_payout: int,
    now: datetime,
    limit: int | None = None,
) -> Attempt | None:
    """Claim the fan's whole available balance (at most ``limit``: what the platform
    balance was found to cover) as a new payout, stored ``submitted`` for its first
    attempt.

    The caller commits before calling Stripe (``send_claimed``): claim and first send
    are one commit. Returns None when, under the lock, there is already an open payout
    or the balance is below the minimum (another run got there first, or a refund came
    in); then nothing was written, and committing only releases the lock."""
    _lock_fan_currency(session, candidate.fan_id, candidate.currency)
    conn = session.connection()
    # A statement sees what was committed when it started: read only once locked.
    open_one, total = conn.execute(
        _OPEN_PAYOUT_AND_AVAILABLE,
        {
            "fan_id": candidate.fan_id,
            "currency": candidate.currency,
            "account_id": ledger.account_id(
                AccountKind.FAN_AVAILABLE, candidate.fan_id, candidate.currency
            ),
        },
    ).one()
    available = int(total) if limit is None else min(int(total), limit)
    if open_one is not None or available < min_payout:
        return None
    payout_id = new_id("po")
    attempt = Attempt(
        payout_id=payout_id,
        run_id=run_id,
        fan_id=candidate.fan_id,
        currency=candidate.currency,
        amount=available,
        destination=candidate.destination,
        attempt=1,
        key=payout_id,
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
            "stripe_key": payout_id,
            "sent_at": now,
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
            ledger.Line(AccountKind.FAN_AVAILABLE, attempt.fan_id, -available),
            ledger.Line(AccountKind.PAYOUT_CLEARING, ledger.PLATFORM, available),
        ],
    )
    _audit(
        session,
        (attempt.payout_id, None, "pending", f"claimed {available} {attempt.currency}"),
        (attempt.payout_id, "pending", "submitted", "attempt 1"),
    )
    return attempt


@dataclass(frozen=True)
class Retry:
    """An open payout as a retry finds it: its latest attempt, its state, and whether
    that attempt is over (``new_key``: older than ``rekey_after``)."""

    last: Attempt
    state: str
    new_key: bool


def open_attempt(
    session: Session, payout_id: str, *, now: datetime, rekey_after: timedelta = REKEY_AFTER
) -> Retry | Outcome:
    """Read an open payout for a retry; an Outcome (``not open``) when it has been
    settled since it was listed.

    Only reads: the caller rolls back before going on, so nothing is held open across
    the calls to Stripe that follow."""
    current = (
        session.connection()
        .execute(
            select(*_ATTEMPT_COLUMNS, Payout.state, Payout.sent_at, Payout.updated_at).where(
                Payout.id == payout_id
            )
        )
        .first()
    )
    if current is None or current.state not in OPEN_STATES:
        return Outcome(payout_id, current.state if current else "missing", "not open")
    sent_at = current.sent_at or current.updated_at
    last = _attempt(current[: len(_ATTEMPT_COLUMNS)])
    return Retry(last, current.state, new_key=now - sent_at >= rekey_after)


def settle_if_found(session: Session, gateway: StripeGateway, retry: Retry) -> Outcome | None:
    """Before sending again with a new key, look: the last attempt is over, and only a
    transfer Stripe has proves anything. Found: settled ``paid``. Stripe could not say:
    the look is audited and the payout stays ``submitted``. None: Stripe has no transfer,
    nothing was written, and the payout may be sent again (``resend``).

    Call with no transaction open (a look is a call to Stripe); the caller commits the
    outcome returned, or rolls back when it is a lost race."""
    found = _look(session, gateway, retry.last)
    if isinstance(found, Outcome) or found is None:
        return found
    return mark_paid(session, retry.last.payout_id, found, detail="found at Stripe")


def resend(session: Session, retry: Retry, *, now: datetime) -> Attempt | Outcome:
    """Move an open payout to ``submitted`` for its next attempt: with the *same* key
    while the last attempt may still be running at Stripe (Stripe keeps a key for 24
    hours, answers 409 while it runs and replays its answer after; a new key could make
    a second transfer), else with a new one, so a saved 500 cannot wedge the payout.

    The caller commits before calling Stripe (``send_claimed``), so a crash leaves the
    payout for retry. An Outcome (a lost race) when another run settled or re-sent the
    payout since it was read: nothing was written, and the caller rolls back."""
    last = retry.last
    key = f"{last.payout_id}-{last.attempt + 1}" if retry.new_key else last.key
    moved = _move(
        session,
        last.payout_id,
        OPEN_STATES,
        "submitted",
        attempt=last.attempt,
        attempts=last.attempt + 1,
        stripe_key=key,
        sent_at=now,
    )
    if moved is None:
        return Outcome(last.payout_id, _LOST_RACE, "changed by another run before sending")
    how = "no transfer found at Stripe, a new key" if retry.new_key else "the same key"
    audit(session, last.payout_id, retry.state, "submitted", f"attempt {moved.attempt} with {how}")
    return moved


def send_claimed(session: Session, gateway: StripeGateway, attempt: Attempt) -> Outcome:
    """Make one ``submitted`` attempt: call Stripe with the attempt's key and settle what
    comes back; an uncertain answer is followed by a look, and a payout Stripe could not
    settle either way stays ``submitted``, audited, for the next run.

    Call only once the attempt is committed (``claim``, ``resend``) and with no
    transaction open. The caller commits the outcome, or rolls back when it is a lost
    race."""
    try:
        transfer = gateway.create_transfer(
            amount=attempt.amount,
            currency=attempt.currency,
            destination=attempt.destination,
            transfer_group=attempt.run_id,
            idempotency_key=attempt.key,
            metadata={"payout_id": attempt.payout_id, "fan_id": attempt.fan_id},
        )
    except PaymentUncertain as exc:
        found = _look(session, gateway, attempt, after=exc.detail)
        if isinstance(found, Outcome):
            return found
        if found is not None:
            detail = f"found at Stripe after an unclear answer: {exc.detail}"
            return mark_paid(session, attempt.payout_id, found, detail=detail)
        detail = f"outcome unknown and no transfer found yet, will retry: {exc.detail}"
        audit(session, attempt.payout_id, "submitted", "submitted", detail)
        return _outcome(attempt, "submitted", detail, exc)
    except PaymentDeclined as exc:
        code = exc.fields.get("stripe_code")
        failed = _fail(
            session,
            attempt.payout_id,
            f"declined by Stripe{f' ({code})' if code else ''}: {exc.detail}",
            attempt=attempt.attempt,
        )
        return _outcome(attempt, failed.state, failed.detail, exc)
    outcome = mark_paid(session, attempt.payout_id, transfer)
    return _outcome(attempt, outcome.state, outcome.detail)


def _look(
    session: Session, gateway: StripeGateway, attempt: Attempt, *, after: str = ""
) -> TransferInfo | Outcome | None:
    """Ask Stripe for the payout's transfer (``after``: the unclear answer that made us
    look). An Outcome when Stripe could not say: the payout stays ``submitted``, and the
    look is audited (the caller commits it)."""
    try:
        return gateway.find_transfer(
            destination=attempt.destination,
            transfer_group=attempt.run_id,
            payout_id=attempt.payout_id,
        )
    except (PaymentUncertain, PaymentDeclined) as exc:
        detail = f"could not look for its transfer at Stripe, will retry: {exc.detail}"
        if after:
            detail = f"outcome unknown ({after}); {detail}"
        audit(session, attempt.payout_id, "submitted", "submitted", detail)
        return _outcome(attempt, "submitted", detail, exc)


def _outcome(attempt: Attempt, state: str, detail: str, exc: Exception | None = None) -> Outcome:
    code = getattr(exc, "fields", {}).get("stripe_code") if exc is not None else None
    return Outcome(attempt.payout_id, state, detail, code)


def mark_paid(
    session: Session, payout_id: str, transfer: TransferInfo, *, detail: str = ""
) -> Outcome:
    """The transfer exists: clearing -> ``fan_paid``. The caller commits, or rolls back
    when the outcome is a lost race (already settled by another run)."""
    return _settle(
        session,
        payout_id,
        "paid",
        AccountKind.FAN_PAID,
        f"transfer {transfer.id}" + (f" ({detail})" if detail else ""),
        stripe_transfer_id=transfer.id,
    )


def _fail(session: Session, payout_id: str, reason: str, *, attempt: int) -> Outcome:
    """Stripe definitely refused this attempt: clearing -> ``fan_available``.

    Only the latest attempt may give the money back: a newer one, sent by another run
    with the same key, may yet have succeeded."""
    return _settle(
        session,
        payout_id,
        "failed",
        AccountKind.FAN_AVAILABLE,
        reason,
        attempt=attempt,
        failure_reason=reason[:500],
    )


def _settle(
    session: Session,
    payout_id: str,
    to_state: str,
    to_account: AccountKind,
    detail: str,
    *,
    attempt: int | None = None,
    **values: Any,
) -> Outcome:
    """Close an open payout and move its money out of clearing, once, whoever calls."""
    payout = _move(session, payout_id, OPEN_STATES, to_state, attempt=attempt, **values)
    if payout is None:
        return Outcome(payout_id, _LOST_RACE, "already settled by another run")
    ledger.post(
        session,
        kind=f"payout_{to_state}",
        ref=payout.payout_id,
        currency=payout.currency,
        lines=[
            ledger.Line(AccountKind.PAYOUT_CLEARING, ledger.PLATFORM, -payout.amount),
            ledger.Line(to_account, payout.fan_id, payout.amount),
        ],
    )
    audit(session, payout.payout_id, "submitted", to_state, detail)
    _emit(session, f"payout.{to_state}", payout_id)
    return Outcome(payout_id, to_state, detail)


def _emit(session: Session, type_: str, payout_id: str) -> None:
    """The payout's event, as ``GET /v1/payouts`` shows it now; an admin's and the
    fan's (a payout spans artists and storefronts, so it is theirs to see only as
    rewards)."""
    session.flush()
    payout = session.get(Payout, payout_id, populate_existing=True)
    assert payout is not None
    events.record(session, type_, payout_view(payout), events.Whose(fan_id=payout.fan_id))


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


def apply_reversal(session: Session, transfer_id: str, amount_reversed: int) -> Payout | None:
    """A transfer was (partly) reversed at Stripe: return the newly reversed part to the
    fan's ``available`` balance. Idempotent: only the increase is moved. Locks the
    payout row; the caller commits (with the record of what told it)."""
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
            ledger.Line(AccountKind.FAN_PAID, payout.fan_id, -delta),
            ledger.Line(AccountKind.FAN_AVAILABLE, payout.fan_id, delta),
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
    _emit(session, "payout.reversed", payout.id)
    return payout


@dataclass(frozen=True)
class OpenPayout:
    id: str
    currency: str
    amount: int


def open_payouts(session: Session) -> list[OpenPayout]:
    """Every open payout, oldest first. Only reads."""
    rows = session.execute(
        select(Payout.id, Payout.currency, Payout.amount)
        .where(Payout.state.in_(OPEN_STATES))
        .order_by(Payout.created_at, Payout.id)
    )
    return [OpenPayout(pid, cur, int(amount)) for pid, cur, amount in rows]
