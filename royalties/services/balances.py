"""What a fan sees of its money: balances per currency and every reward, explained."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import ledger, rewards
from royalties.db import utcnow
from royalties.models import Purchase, Reward
from royalties.pagination import Page, keyset, page
from royalties.rewards import mature_due
from royalties.services._tx import unit_of_work
from royalties.services.fans import get_fan


def fan_balances(
    session: Session, fan_id: str, *, now: datetime | None = None
) -> list[ledger.FanBalance]:
    """Matures whatever hold has passed, then sums the fan's accounts. Commits."""
    get_fan(session, fan_id)
    with unit_of_work(session):
        mature_due(session, now=now or utcnow(), fan_id=fan_id)
    return ledger.fan_balances(session, fan_id)


def fan_rewards(
    session: Session,
    fan_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    now: datetime | None = None,
) -> Page[dict[str, Any]]:
    """The fan's rewards, newest first, keyset-paginated. Matures due ones first."""
    get_fan(session, fan_id)
    with unit_of_work(session):
        mature_due(session, now=now or utcnow(), fan_id=fan_id)
    query = keyset(
        select(Reward, Purchase.content_id)
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .where(Reward.fan_id == fan_id),
        Reward.created_at,
        Reward.id,
        limit=limit,
        cursor=cursor,
    )
    rows = page(session.execute(query).all(), limit, lambda row: (row[0].created_at, row[0].id))
    return Page(
        [rewards.view(reward, content_id) for reward, content_id in rows.items],
        rows.next_cursor,
    )
