"""The review queue: rewards held by fraud signals, and the admin's decisions on them.

A held reward waits in ``pending`` and never matures until an admin decides it, once:
``approve`` and it moves on as usual (it matures when its plan's hold ends);
``reject`` and its money goes back to the artist, in the ledger. Every decision is
kept with who made it, when and why. The queue shows each held reward with every
signal on it, its fan and its link, cleared ones too (a clearance does not release a
reward that is already held).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import audit, rewards
from royalties.audit import Actor
from royalties.db import utcnow
from royalties.errors import Conflict, NotFound, ValidationFailed
from royalties.fraud import signals
from royalties.models import Purchase, ReviewDecision, Reward
from royalties.pagination import keyset, page
from royalties.services._tx import unit_of_work


def queue(
    session: Session, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Held rewards, oldest first, each with every signal on it, its fan and its link."""
    query = keyset(
        select(Reward, Purchase.share_code)
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .where(rewards.is_held()),
        Reward.created_at,
        Reward.id,
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
    rows = page(session.execute(query).all(), limit, lambda row: (row[0].created_at, row[0].id))
    subjects = [s for r, code in rows.items for s in (r.id, r.fan_id, code) if s]
    found = signals.on_subjects(session, subjects)
    items = [
        {
            "reward_id": r.id,
            "purchase_id": r.purchase_id,
            "fan_id": r.fan_id,
            "level": r.level,
            "amount": r.amount,
            "currency": r.currency,
            "created_at": r.created_at,
            "signals": [
                *found.get(r.id, []),
                *found.get(r.fan_id, []),
                *(found.get(code, []) if code else []),
            ],
        }
        for r, code in rows.items
    ]
    return items, rows.next_cursor


def decide(
    session: Session,
    *,
    reward_id: str,
    decision: str,
    reason: str,
    decided_by: str,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Approve (the reward moves on as usual) or reject (its money goes back to the
    artist) one held reward. Audited; each reward is decided once. Commits."""
    if decision not in ("approve", "reject"):
        raise ValidationFailed("decision is approve or reject", fields={"decision": ["unknown"]})
    with unit_of_work(session):
        reward = session.get(Reward, reward_id, with_for_update=True, populate_existing=True)
        if reward is None:
            raise NotFound(f"reward {reward_id} does not exist")
        if not rewards.awaiting_review(reward):
            state = rewards.shown_state(reward)
            raise Conflict(f"reward {reward_id} is not held for review (it is {state})")
        purchase = session.get(Purchase, reward.purchase_id)
        assert purchase is not None
        rewards.decide(
            session,
            reward,
            approve=decision == "approve",
            artist_id=purchase.artist_id,
            now=utcnow(),
        )
        record_ = ReviewDecision(
            reward_id=reward.id, decision=decision, reason=reason[:500], decided_by=decided_by
        )
        session.add(record_)
        session.flush()
        action = "review.approved" if decision == "approve" else "review.rejected"
        detail = {"fan_id": reward.fan_id, "reason": record_.reason}
        audit.record(session, actor, action, reward.id, detail)
        return {
            "reward_id": reward.id,
            "decision": decision,
            "reason": record_.reason,
            "decided_by": decided_by,
            "decided_at": record_.decided_at,
            "review_state": reward.review_state,
        }
