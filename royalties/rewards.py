"""A reward's whole life, in one place (SPEC sections 4 and 5).

A reward row has three columns of state, and only this module reads them:

- ``state``: ``pending`` (in the fan's ``fan_pending`` account, during the plan's hold)
  or ``available`` (moved to ``fan_available`` once the hold passed; paid out from
  there). Moving on is a ledger transaction, once.
- ``review_state``: ``None`` (never flagged), ``held`` (a fraud signal held it: it stays
  ``pending`` whatever the hold, and never matures by itself), ``approved`` (released:
  it goes on as if never held) or ``rejected`` (its money went back to the artist; it
  counts for nothing).
- ``reversed_amount``: what refunds took back from it, never more than its amount.

Its life, each step here and nowhere else:

- **At sale** (``at_sale``): the state, review state and fan account of its ledger line
  are decided once, together: held -> ``pending``/``held``/``fan_pending`` whatever the
  hold; a plan with ``hold_days`` -> ``pending``/``fan_pending``; none -> ``available``/
  ``fan_available`` at once.
- **Maturing** (``mature_due``): ``pending -> available`` once ``available_at`` passed,
  a ledger move ``fan_pending -> fan_available`` of what refunds left. Idempotent and
  safe under concurrency: a reward changes state in a single ``UPDATE .. WHERE state =
  'pending'``, and only the transaction whose update matched moves its money, read under
  the row lock a refund takes. On PostgreSQL rows another transaction holds are skipped
  (being refunded or matured right now) and picked up by the next call. Held and
  rejected rewards never mature by themselves.
- **Review** (``decide``): approved -> it goes on as if never held (it matures when
  due); rejected -> what is left of it moves ``fan_pending -> artist_earnings``.
- **Refunds** (``refund_source``): a reversal comes out of the fan account the reward
  is in now (``fan_pending`` or ``fan_available``, which may go negative); a rejected
  reward's share comes from the artist, who had the money back.

What a person sees follows from the three columns: a reward *shows* as ``held`` or
``rejected`` while reviewed so, as ``reversed`` once refunds took all of it, else as its
``state``; and it *counts* ``amount - reversed_amount``, or nothing when rejected
(``counted``, ``counted_reversed``). Balances, statements, insights, the dashboard and
the API all read through these, so they can never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from royalties import events, ledger
from royalties.ledger import AccountKind
from royalties.models import Purchase, Reward

PENDING, AVAILABLE = "pending", "available"
HELD, APPROVED, REJECTED = "held", "approved", "rejected"
REVERSED = "reversed"
# Every state a person may see, in the order a reward's life goes through them.
SHOWN_STATES = (PENDING, HELD, AVAILABLE, REVERSED, REJECTED)


class _RewardRow(Protocol):
    amount: int
    reversed_amount: int
    state: str
    review_state: str | None


def shown_state(reward: _RewardRow) -> str:
    """The one word a fan or an admin sees for a reward."""
    if reward.review_state in (HELD, REJECTED):
        return str(reward.review_state)
    if reward.reversed_amount == reward.amount:
        return REVERSED
    return reward.state


def shown_state_sql(reward: Any = Reward) -> ColumnElement[str]:
    """SQL: ``shown_state``, for counting rewards by state in one query."""
    return case(
        (reward.review_state.in_((HELD, REJECTED)), reward.review_state),
        (reward.reversed_amount == reward.amount, REVERSED),
        else_=reward.state,
    )


def view(reward: Any, content_id: str) -> dict[str, Any]:
    """A reward as the API shows it (``/v1/fans/{id}/rewards``) and as its events carry
    it. ``reward``: a Reward, or a row with the same attributes."""
    return {
        "id": reward.id,
        "fan_id": reward.fan_id,
        "purchase_id": reward.purchase_id,
        "content_id": content_id,
        "level": reward.level,
        "amount": reward.amount,
        "reversed_amount": reward.reversed_amount,
        "currency": reward.currency,
        "state": shown_state(reward),
        "available_at": reward.available_at,
        "created_at": reward.created_at,
    }


def emit(session: Session, type_: str, reward_ids: list[str], *, now: datetime) -> None:
    """Write a ``type_`` event for each of these rewards, as they are now in this
    transaction (flushed first). Does not commit."""
    if not reward_ids:
        return
    session.flush()
    rows = session.execute(
        select(
            *(getattr(Reward, name) for name in _VIEW_COLUMNS),
            Purchase.content_id,
            Purchase.storefront_id,
            Purchase.artist_id,
        )
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .where(Reward.id.in_(reward_ids))
        .order_by(Reward.purchase_id, Reward.level)
    ).all()
    events.record_all(
        session,
        (
            events.Pending(
                type_,
                view(row, row.content_id),
                events.Whose(row.storefront_id, row.artist_id, row.fan_id),
            )
            for row in rows
        ),
        now=now,
    )


_VIEW_COLUMNS = (
    "id",
    "fan_id",
    "purchase_id",
    "level",
    "amount",
    "reversed_amount",
    "currency",
    "state",
    "review_state",
    "available_at",
    "created_at",
)


def counted(reward: Any = Reward) -> ColumnElement[Any]:
    """SQL: what a reward booked for its fan (nothing once rejected). ``reward``: the
    Reward entity or an alias of it."""
    return case((reward.review_state == REJECTED, 0), else_=reward.amount)


def counted_reversed(reward: Any = Reward) -> ColumnElement[Any]:
    """SQL: what refunds took back from what it booked (nothing once rejected: the
    refund took it from the artist, who had the money back)."""
    return case((reward.review_state == REJECTED, 0), else_=reward.reversed_amount)


def counted_net(reward: Any = Reward) -> ColumnElement[Any]:
    """SQL: what a reward is worth to its fan now: booked minus reversed."""
    return counted(reward) - counted_reversed(reward)


def awaiting_review(reward: _RewardRow) -> bool:
    """Held for review and not decided yet."""
    return reward.review_state == HELD


def is_held(reward: Any = Reward) -> ColumnElement[bool]:
    """SQL: held for review and not decided yet (so it stays out of every payout)."""
    return and_(reward.review_state == HELD, reward.state == PENDING)


# -- at sale ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AtSale:
    """A new reward's row state and the fan account its ledger line credits."""

    state: str
    review_state: str | None
    account: AccountKind


_AT_SALE = {
    (True, True): AtSale(PENDING, HELD, AccountKind.FAN_PENDING),
    (True, False): AtSale(PENDING, HELD, AccountKind.FAN_PENDING),
    (False, True): AtSale(PENDING, None, AccountKind.FAN_PENDING),
    (False, False): AtSale(AVAILABLE, None, AccountKind.FAN_AVAILABLE),
}


def at_sale(*, held: bool, hold_days: int) -> AtSale:
    """Decided once for the row and its ledger line: a held reward waits in pending
    whatever the hold (it must not be paid); else pending for ``hold_days``, or
    available at once when there is no hold."""
    return _AT_SALE[(held, hold_days > 0)]


# -- maturing ---------------------------------------------------------------------------


def mature_due(session: Session, *, now: datetime, fan_id: str | None = None) -> int:
    """Move every reward whose hold has passed to ``available``. Does not commit."""
    due = (
        select(Reward.id)
        .where(
            Reward.state == PENDING,
            Reward.available_at <= now,
            # Held (or rejected) rewards wait for a person: they never mature on their own.
            or_(Reward.review_state.is_(None), Reward.review_state == APPROVED),
        )
        .order_by(Reward.id)
    )
    if fan_id is not None:
        due = due.where(Reward.fan_id == fan_id)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(session.scalars(due))
    if not ids:
        return 0
    moved = session.execute(
        update(Reward)
        .where(Reward.id.in_(ids), Reward.state == PENDING)
        .values(state=AVAILABLE)
        .returning(Reward.id, Reward.fan_id, Reward.currency, Reward.amount, Reward.reversed_amount)
        .execution_options(synchronize_session=False)
    ).all()
    by_currency: dict[str, list[ledger.Line]] = defaultdict(list)
    for reward_id, owner, currency, amount, reversed_amount in moved:
        left = amount - reversed_amount
        by_currency[currency] += [
            ledger.Line(AccountKind.FAN_PENDING, owner, -left, reward_id),
            ledger.Line(AccountKind.FAN_AVAILABLE, owner, left, reward_id),
        ]
    for currency, lines in sorted(by_currency.items()):
        if any(line.amount for line in lines):
            ledger.post(
                session, kind="mature", ref=now.isoformat()[:64], currency=currency, lines=lines
            )
    emit(session, "reward.available", [row[0] for row in moved], now=now)
    return len(moved)


# -- review -----------------------------------------------------------------------------


def decide(
    session: Session, reward: Reward, *, approve: bool, artist_id: str, now: datetime
) -> None:
    """A person's decision on a held reward (the caller checked it is held and locked
    its row): approved, it goes on as if never held (``reward.released``); rejected,
    what is left of it goes back to the artist (``reward.rejected``). Does not commit."""
    if approve:
        reward.review_state = APPROVED
        emit(session, "reward.released", [reward.id], now=now)
        return
    reward.review_state = REJECTED
    left = reward.amount - reward.reversed_amount
    ledger.post(
        session,
        kind="review_rejected",
        ref=reward.id,
        currency=reward.currency,
        lines=[
            ledger.Line(AccountKind.FAN_PENDING, reward.fan_id, -left, reward.id),
            ledger.Line(AccountKind.ARTIST_EARNINGS, artist_id, left),
        ],
    )
    emit(session, "reward.rejected", [reward.id], now=now)


# -- refunds ----------------------------------------------------------------------------


def refund_source(reward: _RewardRow) -> AccountKind | None:
    """The fan account a refund's reversal of this reward comes out of; None when the
    reward was rejected (its money is back with the artist, so the artist gives it)."""
    if reward.review_state == REJECTED:
        return None
    return AccountKind.FAN_PENDING if reward.state == PENDING else AccountKind.FAN_AVAILABLE
