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
- The transfer's parameters depend only on the stored payout (amount, currency,
  destination, ``transfer_group`` = the run that claimed it, the payout id in
  ``metadata``), so Stripe can always be *asked* whether the payout was made.
- **Ambiguity is resolved by looking, never by assuming.** Stripe replays a saved 500
  for a key's whole life, forgets keys after 24 hours and answers
  ``idempotency_error`` when a key meets other parameters, so no answer about a key
  proves anything on its own. After any uncertain outcome the payout stays
  ``submitted`` and the engine looks for the transfer (``find_transfer``); before a
  retry it looks again. Found: settled ``paid`` with that transfer. Not found: sent
  again -- with the *same* key while the last attempt is younger than ``rekey_after``
  (it may still be running at Stripe, which answers 409 then; Stripe keeps keys far
  longer than that), else with a *new* key, so a saved 500 cannot wedge a payout.
- Only a definite refusal (``balance_insufficient``, a destination that cannot receive
  transfers, ...) -> ``failed`` (clearing -> ``fan_available``), and only from the
  latest attempt; success -> ``paid`` (clearing -> ``fan_paid``).
- Every state change is a conditional UPDATE from the expected state, so concurrent
  settlers move the money once; each change writes an audit event.

Cost: a payout is two short transactions around its Stripe call, each a handful of
indexed single-row statements (Core, on the session's connection), whatever the number
of payouts already made; a retry adds one list request to Stripe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from royalties import ledger
from royalties.db import advisory_lock, table, utcnow
from royalties.errors import PaymentDeclined, PaymentUncertain
from royalties.ids import new_id
from royalties.ledger import AccountKind
from royalties.models import Fan, LedgerAccount, LedgerEntry, Payout, PayoutEvent, Reward
from royalties.models.payouts import OPEN_STATES
from royalties.payments.stripe import StripeGateway, TransferInfo

# How long the latest attempt may still be running at Stripe: until then a retry reuses
# its key (a concurrent one gets 409, a finished one its saved answer), after it a retry
# that found no transfer uses a new key. Far below the 24 hours Stripe keeps keys.
REKEY_AFTER = timedelta(minutes=2)
# Stripe's code for a platform balance that does not cover a transfer.
BALANCE_INSUFFICIENT = "balance_insufficient"

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
class Minimums:
    """The smallest balance paid out: ``default`` (``MIN_PAYOUT``), or the currency's own
    (``MIN_PAYOUT_<CUR>``, e.g. JPY has no minor unit)."""

    default: int
    per_currency: tuple[tuple[str, int], ...] = ()

    def of(self, currency: str) -> int:
        return dict(self.per_currency).get(currency, self.default)


@dataclass(frozen=True)
class Candidate:
    fan_id: str
    currency: str
    destination: str
    available: int


# Why a fan with money in a currency is not paid by a run (besides the platform balance,
# which the run itself decides), in the order they are checked.
NOT_PAID_REASONS = {
    "negative_balance": "negative balance (a refund after a payout)",
    "held_for_review": "rewards held for review",
    "under_minimum": "under the minimum",
    "no_account": "no payout account",
    "payouts_off": "payouts not enabled at Stripe",
    "capability_inactive": "transfers capability not active at Stripe",
    "platform_balance_short": "platform balance short",
}


@dataclass
class Survey:
    """Who a run pays (``candidates``) and, for everyone else with money, why not."""

    candidates: list[Candidate]
    not_paid: dict[str, int]  # reason (a key of NOT_PAID_REASONS) -> (fan, currency) pairs


def survey(session: Session, minimums: Minimums) -> Survey:
    """Every fan and currency with an available balance or held rewards: a candidate
    when the balance is at least the currency's minimum and the connected account is
    payable (``payouts_enabled`` and the ``transfers`` capability active), otherwise
    counted under the first reason that applies. One grouped read of the balances."""
    total = func.sum(LedgerEntry.amount)
    rows = session.execute(
        select(
            LedgerAccount.owner_id,
            LedgerAccount.currency,
            total,
            Fan.stripe_account_id,
            Fan.payouts_enabled,
            Fan.transfers_active,
        )
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(Fan, Fan.id == LedgerAccount.owner_id)
        .where(LedgerAccount.kind == AccountKind.FAN_AVAILABLE)
        .group_by(
            LedgerAccount.owner_id,
            LedgerAccount.currency,
            Fan.stripe_account_id,
            Fan.payouts_enabled,
            Fan.transfers_active,
        )
        .order_by(LedgerAccount.owner_id, LedgerAccount.currency)
    ).all()
    held = {
        (fan_id, currency)
        for fan_id, currency in session.execute(
            select(Reward.fan_id, Reward.currency)
            .where(Reward.review_state == "held", Reward.state == "pending")
            .distinct()
        )
    }
    candidates: list[Candidate] = []
    not_paid: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for fan_id, currency, balance, destination, enabled, transfers in rows:
        available = int(balance or 0)
        seen.add((fan_id, currency))
        reason = _not_paid_reason(
            available,
            minimums.of(currency),
            held=(fan_id, currency) in held,
            destination=destination,
            enabled=enabled,
            transfers=transfers,
        )
        if reason is None:
            candidates.append(Candidate(fan_id, currency, str(destination), available))
        elif reason != "nothing":
            not_paid[reason] = not_paid.get(reason, 0) + 1
    only_held = len(held - seen)  # held rewards, nothing available yet
    if only_held:
        not_paid["held_for_review"] = not_paid.get("held_for_review", 0) + only_held
    return Survey(candidates, not_paid)


def _not_paid_reason(
    available: int,
    minimum: int,
    *,
    held: bool,
    destination: str | None,
    enabled: bool,
    transfers: bool,
) -> str | None:
    if available < 0:
        return "negative_balance"
    if available < minimum:
        return "held_for_review" if held else ("under_minimum" if available > 0 else "nothing")
    if destination is None:
        return "no_account"
    if not enabled:
        return "payouts_off"
    if not transfers:
        return "capability_inactive"
    return None


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
    attempt, which the caller makes once this is committed (``send_claimed``).
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
    code: str | None = None  # Stripe's error code, when Stripe refused or failed
    currency: str | None = None
    amount: int = 0


def send(
    session: Session,
    gateway: StripeGateway,
    payout_id: str,
    *,
    now: datetime | None = None,
    rekey_after: timedelta = REKEY_AFTER,
) -> Outcome:
    """Retry one open payout. While its last attempt may still be running at Stripe
    (``rekey_after``), send it again with the same key and settle what comes back (an
    unclear answer is followed by a look). After that, look first: settle it if Stripe
    has the transfer, else send it with a new key.

    Commits: the outcome of the look, or first that the payout is ``submitted`` for a
    new attempt (so a crash leaves it for retry), then its outcome."""
    now = now or utcnow()
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
        state = current.state if current else "missing"
        session.rollback()
        return Outcome(payout_id, state, "not open")
    last = _attempt(current[: len(_ATTEMPT_COLUMNS)])
    session.rollback()  # nothing held open across a call to Stripe
    sent_at = current.sent_at or current.updated_at
    fresh_key = now - sent_at >= rekey_after
    if fresh_key:  # the last attempt is over: only a transfer Stripe has proves anything
        found = _look(session, gateway, last)
        if isinstance(found, Outcome):
            return found
        if found is not None:
            return mark_paid(session, payout_id, found, detail="found at Stripe")
    # Else the last attempt may still be running: the same key is safe (Stripe keeps it
    # for 24 hours, answers 409 while it runs, replays its answer after), a new one not.
    key = f"{payout_id}-{last.attempt + 1}" if fresh_key else last.key
    moved = _move(
        session,
        payout_id,
        OPEN_STATES,
        "submitted",
        attempt=last.attempt,
        attempts=last.attempt + 1,
        stripe_key=key,
        sent_at=now,
    )
    if moved is None:  # settled, or re-sent, by another run since we read it: not ours
        session.rollback()
        return Outcome(payout_id, "unknown", "changed by another run before sending")
    how = "no transfer found at Stripe, a new key" if fresh_key else "the same key"
    detail = f"attempt {moved.attempt} with {how}"
    audit(session, payout_id, current.state, "submitted", detail)
    session.commit()
    return send_claimed(session, gateway, moved)


def _look(
    session: Session, gateway: StripeGateway, attempt: Attempt, *, after: str = ""
) -> TransferInfo | Outcome | None:
    """Ask Stripe for the payout's transfer (``after``: the unclear answer that made us
    look). An Outcome when Stripe could not say: the payout stays ``submitted``, and the
    look is audited and committed."""
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
        session.commit()
        return _outcome(attempt, "submitted", detail, exc)


def send_claimed(session: Session, gateway: StripeGateway, attempt: Attempt) -> Outcome:
    """Make one committed ``submitted`` attempt: call Stripe with the attempt's key and
    settle what comes back; an uncertain answer is followed by a look. Commits."""
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
        session.commit()
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


def _outcome(attempt: Attempt, state: str, detail: str, exc: Exception | None = None) -> Outcome:
    code = getattr(exc, "fields", {}).get("stripe_code") if exc is not None else None
    return Outcome(attempt.payout_id, state, detail, code, attempt.currency, attempt.amount)


def mark_paid(
    session: Session, payout_id: str, transfer: TransferInfo, *, detail: str = ""
) -> Outcome:
    """The transfer exists: clearing -> ``fan_paid``. Commits."""
    return _settle(
        session,
        payout_id,
        "paid",
        AccountKind.FAN_PAID,
        f"transfer {transfer.id}" + (f" ({detail})" if detail else ""),
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
        session.rollback()
        return Outcome(payout_id, "unknown", "already settled by another run")
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
    return payout


@dataclass(frozen=True)
class OpenPayout:
    id: str
    currency: str
    amount: int


def open_payouts(session: Session) -> list[OpenPayout]:
    rows = session.execute(
        select(Payout.id, Payout.currency, Payout.amount)
        .where(Payout.state.in_(OPEN_STATES))
        .order_by(Payout.created_at, Payout.id)
    )
    return [OpenPayout(pid, cur, int(amount)) for pid, cur, amount in rows]
