"""What the dashboard pages show, gathered from the services (no SQL of its own).

Read-only except where a service it calls commits (``fan_balances`` matures due holds,
``artist_insights`` refreshes its cache): those run first, so the rows read afterwards
see their effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from royalties import rewards
from royalties.ledger import FanBalance
from royalties.models import Artist, Fan, RewardPlan, WebhookEndpoint
from royalties.payouts import list_payouts
from royalties.payouts.payable import Minimums, outlook
from royalties.services import earnings
from royalties.services.balances import fan_balances, fan_rewards
from royalties.services.catalog import catalogue, content_sales, get_artist, plan_history
from royalties.services.fans import get_fan, profile
from royalties.services.links import artists_shared_by, link_stats
from royalties.webhooks.endpoints import Owner, disabled_endpoints

PLAN_HISTORY = 5
PAYOUTS_SHOWN = 20
COMING_SHOWN = 50


@dataclass
class ArtistPage:
    artist: Artist
    content: list[dict[str, Any]]
    plan: RewardPlan
    plan_history: list[RewardPlan]
    insights: dict[str, Any]
    currencies: list[str] = field(default_factory=list)
    disabled_webhooks: list[WebhookEndpoint] = field(default_factory=list)


def artist_page(session: Session, artist_id: str, *, force: bool = False) -> ArtistPage:
    from royalties.services.insights import artist_insights

    artist = get_artist(session, artist_id)
    insights = artist_insights(session, artist_id, force=force)
    content = content_sales(session, artist_id)
    history = plan_history(session, artist_id, limit=PLAN_HISTORY)
    currencies = sorted({row["item"].currency for row in content})
    disabled = disabled_endpoints(session, Owner("artist", artist_id))
    return ArtistPage(artist, content, history[0], history, insights, currencies, disabled)


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
    shareable: list[dict[str, Any]] = field(default_factory=list)
    coming: list[dict[str, Any]] = field(default_factory=list)
    outlook: dict[str, str | None] = field(default_factory=dict)
    minimums: Minimums = field(default_factory=lambda: Minimums(1000))
    over_time: list[earnings.EarningsSeries] = field(default_factory=list)


def fan_page(
    session: Session,
    fan_id: str,
    *,
    public_base_url: str,
    minimums: Minimums,
    artist_id: str | None = None,
) -> FanPage:
    """``artist_id``: an artist whose catalogue to offer besides those the fan already
    shares (the one whose join page the fan came from)."""
    balances = fan_balances(session, fan_id)  # commits: matures due holds first
    prof = profile(session, fan_id)
    artists = artists_shared_by(session, fan_id)
    if artist_id and artist_id not in artists and session.get(Artist, artist_id) is not None:
        artists.append(artist_id)
    links = link_stats(session, fan_id, public_base_url)
    linked = {row["link"].content_id for row in links if row["link"].active}
    shareable = [
        {"item": item, "linked": item.id in linked} for item in catalogue(session, artists)
    ]
    coming = [
        r
        for r in fan_rewards(session, fan_id, limit=COMING_SHOWN).items
        if r["state"] in (rewards.PENDING, rewards.HELD)
    ]
    available = {b.currency: b.available for b in balances}
    return FanPage(
        fan=prof.fan,
        sponsor=get_fan(session, prof.fan.sponsor_id) if prof.fan.sponsor_id else None,
        downline=prof.downline,
        links=links,
        by_level=earnings.by_level(session, fan_id),
        by_content=earnings.by_content(session, fan_id),
        balances=balances,
        payouts=list_payouts(session, fan_id=fan_id, limit=PAYOUTS_SHOWN, cursor=None)[0],
        shareable=shareable,
        coming=coming,
        outlook=outlook(session, prof.fan, available, minimums),
        minimums=minimums,
        over_time=earnings.over_time(session, fan_id),
    )
