"""Content items and reward plans, with artist ownership enforced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import plans
from royalties.errors import Forbidden, NotFound, ValidationFailed
from royalties.ids import new_id
from royalties.models import CONTENT_KINDS, Artist, Content, Purchase, RewardPlan
from royalties.money import check_amount, normalize_currency
from royalties.services._tx import transactional


def get_artist(session: Session, artist_id: str) -> Artist:
    artist = session.get(Artist, artist_id)
    if artist is None:
        raise NotFound(f"artist {artist_id} does not exist")
    return artist


def get_content(session: Session, content_id: str) -> Content:
    content = session.get(Content, content_id)
    if content is None:
        raise NotFound(f"content {content_id} does not exist")
    return content


@transactional
def create_content(
    session: Session,
    *,
    artist_id: str,
    title: str,
    kind: str,
    price: int,
    currency: str,
    storefront_url: str,
) -> Content:
    get_artist(session, artist_id)
    content = Content(id=new_id("cnt"), artist_id=artist_id)
    _set_details(content, title, kind, price, currency, storefront_url)
    session.add(content)
    session.flush()
    return content


@transactional
def update_content(
    session: Session,
    *,
    content_id: str,
    acting_artist_id: str | None,
    title: str,
    kind: str,
    price: int,
    currency: str,
    storefront_url: str,
) -> Content:
    """Change an item's details (``acting_artist_id`` None: an admin acts). Sales already
    recorded keep their amounts and currency; a new currency applies to later sales."""
    content = get_content(session, content_id)
    if acting_artist_id is not None and content.artist_id != acting_artist_id:
        raise Forbidden("only the artist who owns this content may change it")
    _set_details(content, title, kind, price, currency, storefront_url)
    session.flush()
    return content


def _set_details(
    content: Content, title: str, kind: str, price: int, currency: str, storefront_url: str
) -> None:
    """An item's details, checked: a known kind, a price of 0 or more, a currency code."""
    if kind not in CONTENT_KINDS:
        raise ValidationFailed(
            f"kind is one of {', '.join(CONTENT_KINDS)}", fields={"kind": ["unknown kind"]}
        )
    content.title = title
    content.kind = kind
    content.price = check_amount(price, allow_zero=True)
    content.currency = normalize_currency(currency)
    content.storefront_url = storefront_url


@transactional
def set_artist_plan(
    session: Session, *, artist_id: str, level_rates_bps: Sequence[object], hold_days: object
) -> RewardPlan:
    get_artist(session, artist_id)
    return plans.add_plan_version(
        session,
        artist_id=artist_id,
        content_id=None,
        level_rates_bps=level_rates_bps,
        hold_days=hold_days,
    )


@transactional
def set_content_plan(
    session: Session,
    *,
    acting_artist_id: str | None,
    content_id: str,
    level_rates_bps: Sequence[object],
    hold_days: object,
) -> RewardPlan:
    """A new plan version for one item; ``acting_artist_id`` None means an admin acts."""
    content = get_content(session, content_id)
    if acting_artist_id is not None and content.artist_id != acting_artist_id:
        raise Forbidden("only the artist who owns this content may set its plan")
    return plans.add_plan_version(
        session,
        artist_id=content.artist_id,
        content_id=content.id,
        level_rates_bps=level_rates_bps,
        hold_days=hold_days,
    )


def plan_for(session: Session, *, artist_id: str, content_id: str | None) -> RewardPlan:
    """The current plan of an artist (or of a content item, falling back to its artist's)."""
    if content_id is None:
        get_artist(session, artist_id)
        plan = plans.current_plan(session, plans.artist_scope(artist_id))
        if plan is None:
            raise NotFound(f"artist {artist_id} has no plan")
        return plan
    content = get_content(session, content_id)
    return plans.effective_plan(session, artist_id=content.artist_id, content_id=content.id)


def content_sales(session: Session, artist_id: str) -> list[dict[str, Any]]:
    """The artist's content, newest first, each with its number of sales and its
    revenue net of refunds."""
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
    return [
        {"item": item, "sales": int(count or 0), "revenue": int(net or 0)}
        for item, count, net in rows
    ]


def plan_history(session: Session, artist_id: str, *, limit: int) -> list[RewardPlan]:
    """The artist's plan versions, newest first (the first is the one in force)."""
    return list(
        session.scalars(
            select(RewardPlan)
            .where(RewardPlan.scope == plans.artist_scope(artist_id))
            .order_by(RewardPlan.version.desc())
            .limit(limit)
        )
    )


def catalogue(session: Session, artist_ids: Sequence[str]) -> list[Content]:
    """The content of these artists, newest first."""
    if not artist_ids:
        return []
    return list(
        session.scalars(
            select(Content)
            .where(Content.artist_id.in_(list(artist_ids)))
            .order_by(Content.created_at.desc(), Content.id)
        )
    )
