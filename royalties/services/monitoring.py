"""What an operator watches that only the database knows: rewards by state, payouts by
state, and the events backlog. Read at each metrics scrape, so each figure is one
indexed or grouped query, and nothing is written."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import rewards
from royalties.models import Payout
from royalties.models.events import Event, WebhookDelivery


@dataclass(frozen=True)
class Snapshot:
    rewards_by_state: dict[str, int]  # every state of rewards.SHOWN_STATES, 0 when none
    payouts_by_state: dict[str, int]  # pending, submitted, paid, failed
    events_not_fanned_out: int  # written, not yet turned into webhook deliveries
    webhook_deliveries_pending: int  # due or waiting for a retry


PAYOUT_STATES = ("pending", "submitted", "paid", "failed")


def snapshot(session: Session) -> Snapshot:
    """The figures, read in one short read-only transaction (rolled back)."""
    try:
        state = rewards.shown_state_sql()
        by_reward = {s: n for s, n in session.execute(select(state, func.count()).group_by(state))}
        by_state = select(Payout.state, func.count()).group_by(Payout.state)
        by_payout = {s: n for s, n in session.execute(by_state)}
        # NOT fanned_out and state = 'pending': the predicates of their partial indexes
        backlog = session.scalar(select(func.count()).where(~Event.fanned_out)) or 0
        pending = (
            session.scalar(select(func.count()).where(WebhookDelivery.state == "pending")) or 0
        )
    finally:
        session.rollback()
    return Snapshot(
        rewards_by_state={s: int(by_reward.get(s, 0)) for s in rewards.SHOWN_STATES},
        payouts_by_state={s: int(by_payout.get(s, 0)) for s in PAYOUT_STATES},
        events_not_fanned_out=int(backlog),
        webhook_deliveries_pending=int(pending),
    )
