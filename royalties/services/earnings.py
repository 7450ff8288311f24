"""What a fan earned, grouped as the fan page shows it: by level of the influence chain
and by content item. Every amount is counted as ``royalties.rewards`` counts a reward
(net of refunds; nothing for a rejected one), so these figures agree with the fan's
balance, statement and the artist's insights."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import rewards
from royalties.models import Artist, Content, Purchase, Reward


def by_level(session: Session, fan_id: str) -> list[dict[str, Any]]:
    """Per currency and level: how many rewards, what they booked, what refunds took
    back, and the net."""
    rows = session.execute(
        select(
            Reward.currency,
            Reward.level,
            func.count(),
            func.sum(rewards.counted()),
            func.sum(rewards.counted_reversed()),
        )
        .where(Reward.fan_id == fan_id)
        .group_by(Reward.currency, Reward.level)
        .order_by(Reward.currency, Reward.level)
    ).all()
    return [
        {
            "currency": currency,
            "level": level,
            "rewards": int(count),
            "earned": int(earned or 0),
            "reversed": int(reversed_ or 0),
            "net": int(earned or 0) - int(reversed_ or 0),
        }
        for currency, level, count, earned, reversed_ in rows
    ]


def by_content(session: Session, fan_id: str) -> list[dict[str, Any]]:
    """Per content item (and currency): how many rewards and their net, largest first."""
    net = func.sum(rewards.counted_net())
    rows = session.execute(
        select(Content.id, Content.title, Artist.name, Reward.currency, func.count(), net)
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .join(Content, Content.id == Purchase.content_id)
        .join(Artist, Artist.id == Content.artist_id)
        .where(Reward.fan_id == fan_id)
        .group_by(Content.id, Content.title, Artist.name, Reward.currency)
        .order_by(net.desc(), Content.title)
    ).all()
    return [
        {
            "content_id": cid,
            "title": title,
            "artist": artist,
            "currency": currency,
            "rewards": int(count),
            "net": int(total or 0),
        }
        for cid, title, artist, currency, count, total in rows
    ]
