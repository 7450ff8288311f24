"""What a fan sees of its money: balances per currency and every reward, explained."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from royalties import ledger, rewards
from royalties.db import utcnow
from royalties.errors import ValidationFailed
from royalties.holds import mature_due
from royalties.models import Purchase, Reward
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


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def _encode(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "bad cursor", fields={"cursor": ["not a cursor we issued"]}
        ) from None


def fan_rewards(
    session: Session,
    fan_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    now: datetime | None = None,
) -> Page:
    """The fan's rewards, newest first, keyset-paginated. Matures due ones first."""
    get_fan(session, fan_id)
    with unit_of_work(session):
        mature_due(session, now=now or utcnow(), fan_id=fan_id)
    query = (
        select(Reward, Purchase.content_id)
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .where(Reward.fan_id == fan_id)
        .order_by(Reward.created_at.desc(), Reward.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        stamp, row_id = _decode(cursor)
        query = query.where(
            or_(Reward.created_at < stamp, and_(Reward.created_at == stamp, Reward.id < row_id))
        )
    rows = session.execute(query).all()
    items = [
        {
            "id": reward.id,
            "purchase_id": reward.purchase_id,
            "content_id": content_id,
            "level": reward.level,
            "amount": reward.amount,
            "reversed_amount": reward.reversed_amount,
            "currency": reward.currency,
            "state": rewards.shown_state(reward),
            "available_at": reward.available_at,
            "created_at": reward.created_at,
        }
        for reward, content_id in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1][0]
        next_cursor = _encode(last.created_at, last.id)
    return Page(items, next_cursor)
