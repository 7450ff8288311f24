"""Holds: a reward stays ``pending`` for its plan's ``hold_days``, then becomes
``available`` through a ledger transaction (pending -> available).

Idempotent and safe under concurrency: a reward changes state in a single
``UPDATE .. WHERE state = 'pending'``, and only the transaction whose update matched
moves its money. What moves is what is left of the reward after reversals, read under
the same row lock a refund takes, so a concurrent refund and maturing never double
count. On PostgreSQL rows another transaction holds are skipped (they are being
refunded or matured right now) and picked up by the next call.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from royalties import ledger
from royalties.ledger import AccountKind
from royalties.models import Reward


def mature_due(session: Session, *, now: datetime, fan_id: str | None = None) -> int:
    """Move every reward whose hold has passed to ``available``. Does not commit."""
    due = (
        select(Reward.id)
        .where(
            Reward.state == "pending",
            Reward.available_at <= now,
            # Held (or rejected) rewards wait for a person: they never mature on their own.
            or_(Reward.review_state.is_(None), Reward.review_state == "approved"),
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
        .where(Reward.id.in_(ids), Reward.state == "pending")
        .values(state="available")
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
    return len(moved)
