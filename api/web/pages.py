"""What the dashboard pages show, read from the database in a few grouped queries.

Read-only except where a service it calls commits (``fan_balances`` matures due holds,
``artist_insights`` refreshes its cache): those run first, so the rows read afterwards
see their effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import plans
from royalties.ledger import FanBalance
from royalties.models import Artist, Click, Content, Fan, Purchase, Reward, RewardPlan, ShareLink
from royalties.payouts import list_payouts
from royalties.services.balances import fan_balances
from royalties.services.catalog import get_artist
from royalties.services.fans import profile
from royalties.services.links import share_url

PLAN_HISTORY = 5
PAYOUTS_SHOWN = 20


@dataclass
class ArtistPage:
    artist: Artist
    content: list[dict[str, Any]]
    plan: RewardPlan
    plan_history: list[RewardPlan]
    insights: dict[str, Any]
    currencies: list[str] = field(default_factory=list)


def artist_page(session: Session, artist_id: str, *, force: bool = False) -> ArtistPage:
    from royalties.services.insights import artist_insights

    artist = get_artist(session, artist_id)
    insights = artist_insights(session, artist_id, force=force)
    sales = (
        select(
            Purchase.content_id,
            func.count().label("sales"),
            func.coalesce(func.sum(Purchase.amount - Purchase.refunded_amount), 0).label("net"),
        )
        .where(Purchase.artist_id == artist_id)
        .group_by(Purchase.content_id)
        .subquery()
    )
    rows = session.execute(
        select(Content, sales.c.sales, sales.c.net)
        .outerjoin(sales, sales.c.content_id == Content.id)
        .where(Content.artist_id == artist_id)
        .order_by(Content.created_at.desc(), Content.id)
    ).all()
    content = [
        {"item": item, "sales": int(count or 0), "revenue": int(net or 0)}
        for item, count, net in rows
    ]
    history = list(
        session.scalars(
            select(RewardPlan)
            .where(RewardPlan.scope == plans.artist_scope(artist_id))
            .order_by(RewardPlan.version.desc())
            .limit(PLAN_HISTORY)
        )
    )
    currencies = sorted({row["item"].currency for row in content})
    return ArtistPage(artist, content, history[0], history, insights, currencies)


@dataclass
class FanPage:
    fan: Fan
    sponsor: Fan | None
    downline: dict[int, int]
    links: list[dict[str, Any]]
    by_level: list[dict[str, Any]]
    by_content: list[dict[str, Any]]
    balances: list[FanBalance]
    payouts: list[dict[str, Any]]


def fan_page(session: Session, fan_id: str, *, public_base_url: str) -> FanPage:
    balances = fan_balances(session, fan_id)  # commits: matures due holds first
    prof = profile(session, fan_id)
    return FanPage(
        fan=prof.fan,
        sponsor=session.get(Fan, prof.fan.sponsor_id) if prof.fan.sponsor_id else None,
        downline=prof.downline,
        links=_links(session, fan_id, public_base_url),
        by_level=_earnings_by_level(session, fan_id),
        by_content=_earnings_by_content(session, fan_id),
        balances=balances,
        payouts=list_payouts(session, fan_id=fan_id, limit=PAYOUTS_SHOWN, cursor=None)[0],
    )


def _links(session: Session, fan_id: str, public_base_url: str) -> list[dict[str, Any]]:
    clicks = (
        select(Click.code, func.count().label("n"))
        .join(ShareLink, ShareLink.code == Click.code)
        .where(ShareLink.fan_id == fan_id)
        .group_by(Click.code)
        .subquery()
    )
    sales = (
        select(Purchase.share_code, func.count().label("n"))
        .join(ShareLink, ShareLink.code == Purchase.share_code)
        .where(ShareLink.fan_id == fan_id)
        .group_by(Purchase.share_code)
        .subquery()
    )
    rows = session.execute(
        select(ShareLink, Content.title, Content.kind, clicks.c.n, sales.c.n)
        .join(Content, Content.id == ShareLink.content_id)
        .outerjoin(clicks, clicks.c.code == ShareLink.code)
        .outerjoin(sales, sales.c.share_code == ShareLink.code)
        .where(ShareLink.fan_id == fan_id)
        .order_by(ShareLink.created_at.desc(), ShareLink.code)
    ).all()
    return [
        {
            "link": link,
            "url": share_url(public_base_url, link.code),
            "title": title,
            "kind": kind,
            "clicks": int(n_clicks or 0),
            "sales": int(n_sales or 0),
        }
        for link, title, kind, n_clicks, n_sales in rows
    ]


def _earnings_by_level(session: Session, fan_id: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Reward.currency,
            Reward.level,
            func.count(),
            func.sum(Reward.amount),
            func.sum(Reward.reversed_amount),
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


def _earnings_by_content(session: Session, fan_id: str) -> list[dict[str, Any]]:
    net = func.sum(Reward.amount - Reward.reversed_amount)
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
