"""Recording a sale (SPEC sections 3 and 4): who the buyer is, who brought them, who
earns what, and the ledger transaction that books it. One database transaction.

The influence chain is resolved here and stored on the purchase; the arithmetic is
``royalties.attribution``'s; the money moves only through ``royalties.ledger.post``.
Hot-path cost (``bench/purchases.py`` measures it): two indexed reads (content, plan,
link and buyer in one; the upline with its fraud flags from the closure table in the
other), then Core inserts on the session's connection, on PostgreSQL all in one
statement (``_write_in_one_statement``); no graph walk, no ORM unit of work, no cached
balance to lock.

A sale is worked out whole before anything is written (``book``: its rows, posting,
receipt and events), then written (``write_bookings``), so that a batch of sales
(``purchase_batch``) goes through the same rules and writes many in one go.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache, lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from royalties import events, graph, idempotency, ledger, plans, rewards
from royalties.attribution import (
    RewardLine,
    how_attributed,
    influence_chain,
    level_one,
    split_sale,
)
from royalties.db import insert_rows, json_rows, json_rows_insert, table, utcnow
from royalties.errors import NotFound, PlanError, ValidationFailed
from royalties.fraud import at_purchase
from royalties.fraud.signals import carries_active_signal
from royalties.ids import new_ordered_id, random_token
from royalties.ledger import AccountKind
from royalties.models import (
    Content,
    Event,
    Fan,
    FanAncestor,
    IdempotencyRecord,
    Purchase,
    Reward,
    RewardPlan,
    ShareLink,
)
from royalties.money import check_amount, normalize_currency
from royalties.services._tx import unit_of_work


@dataclass(frozen=True)
class BuyerRef:
    """How the storefront names the buyer: exactly one of the three."""

    fan_id: str | None = None
    email: str | None = None
    external_id: str | None = None


_RECEIPT_FIELDS = (
    "id",
    "content_id",
    "storefront_id",
    "buyer_id",
    "amount",
    "currency",
    "artist_share",
    "fee",
    "plan_version",
    "share_code",
    "refunded_amount",
)


def receipt(
    purchase: Mapping[Any, Any],
    rewards: Sequence[RewardLine],
    *,
    attribution: str,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The purchase (a purchases row) as the API returns it, and as an idempotent replay
    returns it again: with how it was attributed, and what the storefront should know
    (a share code that attributed nothing)."""
    return {
        **{name: purchase[name] for name in _RECEIPT_FIELDS},
        "attribution": attribution,
        "warnings": list(warnings),
        "rewards": [{"level": r.level, "fan_id": r.fan_id, "amount": r.amount} for r in rewards],
        "created_at": purchase["created_at"].isoformat(),
    }


def _unused_code(share_code: str | None, link_owner: str | None) -> list[str]:
    if share_code is None or link_owner is not None:
        return []
    return [
        f"share_code {share_code!r} is not an active link to this artist's content: "
        "the sale is attributed as if no link was used"
    ]


def record_purchase(
    session: Session,
    *,
    storefront_id: str,
    content_id: str,
    amount: int,
    currency: str,
    buyer: BuyerRef,
    share_code: str | None = None,
    fee_bps: int = 0,
    client_ip_hash: str | None = None,
    claim: idempotency.Claim | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Attribute, split and book one sale; returns its receipt. Commits."""
    now = now or utcnow()
    with unit_of_work(session):
        conn = session.connection()
        sale = SaleRequest(content_id, amount, currency, buyer, share_code, client_ip_hash)
        facts, amount = checked_sale(
            sale_facts(conn, content_id, share_code, buyer, storefront_id), sale
        )
        pending: list[events.Pending] = []  # the sale's events, written together at the end
        buyer_id, buyer_sponsor, buyer_email = _buyer(session, facts, buyer, storefront_id, pending)
        level1 = level_one(facts.link_owner, buyer_id, buyer_sponsor)
        depth = len(facts.level_rates_bps) - 1
        upline = read_upline(conn, level1, depth) if level1 else []
        booking = book(
            session,
            facts,
            sale,
            storefront_id=storefront_id,
            amount=amount,
            buyer_id=buyer_id,
            buyer_email=buyer_email,
            level1=level1,
            upline=upline,
            fee_bps=fee_bps,
            pending=pending,
            claim=claim,
            now=now,
        )
        write_bookings(session, [booking])
        return booking.body


@dataclass(frozen=True)
class SaleRequest:
    """One sale as a storefront reports it (``POST /v1/purchases``' body)."""

    content_id: str
    amount: int
    currency: str
    buyer: BuyerRef
    share_code: str | None = None
    client_ip_hash: str | None = None


def checked_sale(facts: Row[Any] | None, sale: SaleRequest) -> tuple[Row[Any], int]:
    """The sale's facts (``sale_facts``' row) and amount, once the sale is one that can
    be booked: its content exists, in its currency, with a plan. Else the error the
    storefront is answered."""
    if facts is None:
        raise NotFound(f"content {sale.content_id} does not exist")
    amount = check_amount(sale.amount)
    if normalize_currency(sale.currency) != facts.currency:
        raise ValidationFailed(
            f"this content is sold in {facts.currency}",
            fields={"currency": [f"must be {facts.currency}, the content's currency"]},
        )
    if facts.plan_id is None:  # every artist gets version 1 at creation: a broken database
        raise PlanError(f"artist {facts.artist_id} has no reward plan")
    return facts, amount


@dataclass(frozen=True)
class Booking:
    """Everything one sale writes, worked out before anything is written, so that many
    sales can be written together (``write_bookings``)."""

    purchase: dict[str, Any]  # the purchases row
    reward_rows: list[dict[str, Any]]
    posting: ledger.Posting
    body: dict[str, Any]  # the receipt
    events: list[events.Pending]
    claim: idempotency.Claim | None


def book(
    session: Session,
    facts: Row[Any],
    sale: SaleRequest,
    *,
    storefront_id: str,
    amount: int,
    buyer_id: str,
    buyer_email: str | None,
    level1: str | None,
    upline: Sequence[Upline],
    fee_bps: int,
    pending: list[events.Pending],
    claim: idempotency.Claim | None,
    now: datetime,
) -> Booking:
    """Attribute and split one sale whose buyer is known (``buyer_id``, level 1 and its
    ``upline`` read), and work out its rows, ledger posting, receipt and events (after
    those already in ``pending``). Writes only the fraud signals its checks find."""
    rates: list[int] = facts.level_rates_bps
    chain = influence_chain(level1, [fan.fan_id for fan in upline[1:]], len(rates))
    split = split_sale(amount, rates, chain, buyer_id, fee_bps)
    purchase_id = new_ordered_id("pur")
    purchase = {
        "id": purchase_id,
        "storefront_id": storefront_id,
        "content_id": sale.content_id,
        "artist_id": facts.artist_id,
        "buyer_id": buyer_id,
        "amount": amount,
        "currency": facts.currency,
        "artist_share": split.artist_share,
        "fee": split.fee,
        "plan_id": facts.plan_id,
        "plan_version": facts.plan_version,
        "share_code": sale.share_code,
        "chain": chain,
        "refunded_amount": 0,
        "client_ip_hash": sale.client_ip_hash,
        "created_at": now,
    }
    reward_ids = [new_ordered_id("rwd") for _ in split.rewards]
    held = at_purchase.held_rewards(
        session,
        [
            (line.fan_id, reward_id)
            for line, reward_id in zip(split.rewards, reward_ids, strict=True)
        ],
        upline,
        buyer_email=buyer_email,
        link_owner=facts.link_owner,  # the buyer's own link: the buyer earns nothing
        link_flagged=bool(facts.link_flagged),
        client_ip_hash=sale.client_ip_hash,
    )
    starts = [
        rewards.at_sale(held=reward_id in held, hold_days=facts.hold_days)
        for reward_id in reward_ids
    ]
    reward_rows = [
        {
            "id": reward_id,
            "purchase_id": purchase_id,
            "level": line.level,
            "fan_id": line.fan_id,
            "amount": line.amount,
            "currency": facts.currency,
            "reversed_amount": 0,
            "state": start.state,
            "review_state": start.review_state,
            "available_at": now + timedelta(days=facts.hold_days),
            "created_at": now,
        }
        for line, reward_id, start in zip(split.rewards, reward_ids, starts, strict=True)
    ]
    posting = ledger.Posting(
        "purchase",
        purchase_id,
        facts.currency,
        (
            ledger.Line(AccountKind.STOREFRONT_RECEIVABLE, storefront_id, -amount),
            ledger.Line(AccountKind.ARTIST_EARNINGS, facts.artist_id, split.artist_share),
            ledger.Line(AccountKind.PLATFORM_FEES, ledger.PLATFORM, split.fee),
            *(
                ledger.Line(start.account, line.fan_id, line.amount, reward_id)
                for line, reward_id, start in zip(split.rewards, reward_ids, starts, strict=True)
            ),
        ),
    )
    body = receipt(
        purchase,
        split.rewards,
        attribution=how_attributed(level1, facts.link_owner),
        warnings=_unused_code(sale.share_code, facts.link_owner),
    )
    return Booking(
        purchase,
        reward_rows,
        posting,
        body,
        _sale_events(pending, body, purchase, reward_rows, held, now),
        claim,
    )


def _sale_events(
    pending: list[events.Pending],
    body: dict[str, Any],
    purchase: dict[str, Any],
    reward_rows: list[dict[str, Any]],
    held: Collection[str],
    now: datetime,
) -> list[events.Pending]:
    """The sale's events, in order: a new buyer's (already in ``pending``), the purchase,
    each reward, each hold."""
    sale = events.Whose(purchase["storefront_id"], purchase["artist_id"])
    out = [*pending, events.Pending("purchase.recorded", body, sale, now)]
    for row in reward_rows:
        data = rewards.view(SimpleNamespace(**row), purchase["content_id"])
        whose = events.Whose(sale.storefront_id, sale.artist_id, row["fan_id"])
        out.append(events.Pending("reward.created", data, whose, now))
        if row["id"] in held:
            out.append(events.Pending("reward.held", data, whose, now))
    return [event if event.at else replace(event, at=now) for event in out]


def write_bookings(session: Session, bookings: Sequence[Booking]) -> None:
    """Write these sales, in order, in a fixed number of statements whatever their number:
    purchases, rewards, the ledger postings, the events, and the idempotency records of
    the claimed keys (last). Does not commit."""
    if not bookings:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        prepared = ledger.prepare([booking.posting for booking in bookings])
        if prepared.named_apart:  # each sale's posting names its own purchase: always
            session.flush()  # pending ORM objects first (a new buyer, say)
            _write_in_one_statement(conn, bookings, prepared)
            return
    insert_rows(conn, table(Purchase), [booking.purchase for booking in bookings])
    insert_rows(conn, table(Reward), [row for booking in bookings for row in booking.reward_rows])
    ledger.post_many(session, [booking.posting for booking in bookings])
    events.record_all(session, [event for booking in bookings for event in booking.events])
    idempotency.complete_all(
        session,
        [(booking.claim, booking.body) for booking in bookings if booking.claim is not None],
    )


def _write_in_one_statement(
    conn: Connection, bookings: Sequence[Booking], prepared: ledger.Prepared
) -> None:
    """PostgreSQL: ``write_bookings``'s seven INSERTs as one statement of data-modifying
    CTEs, one round trip instead of seven (``bench/purchases.py``: a sale's statements
    and their round trips were most of what it waited for). The rows and checks are the
    same: ``ledger.prepare``'s postings (``ledger.posting_ctes``), ``events.event_rows``,
    ``idempotency.record_rows``, whose insert-or-ignore returns what it wrote so that a
    key processed meanwhile still raises ``IdempotencyInFlight``."""
    claimed = [(booking.claim, booking.body) for booking in bookings if booking.claim is not None]
    parts = {
        "purchases": (table(Purchase), [booking.purchase for booking in bookings]),
        "rewards": (table(Reward), [row for booking in bookings for row in booking.reward_rows]),
        "events": (
            table(Event),
            events.event_rows([event for booking in bookings for event in booking.events]),
        ),
        "idempotency_records": (table(IdempotencyRecord), idempotency.record_rows(claimed)),
    }
    shape = tuple(
        (name, written, tuple(rows[0])) for name, (written, rows) in parts.items() if rows
    )
    params = ledger.posting_params(prepared)
    params.update({name: json_rows(written, rows) for name, (written, rows) in parts.items()})
    stored = conn.execute(_one_statement(shape), params).scalar_one()
    idempotency.check_completed(int(stored), len(claimed))


@lru_cache(maxsize=32)
def _one_statement(shape: tuple[tuple[str, Table, tuple[str, ...]], ...]) -> Any:
    """The statement ``_write_in_one_statement`` sends for rows of this shape (which
    tables get rows, with which columns): built and compiled once."""
    ctes = []
    completed = None
    for name, written, columns in shape:
        insert_all = json_rows_insert(
            written, columns, or_ignore=name == "idempotency_records", param=name
        )
        if name == "idempotency_records":
            completed = insert_all.returning(written.c.id).cte(f"{name}_written")
        else:
            ctes.append(insert_all.cte(f"{name}_written"))
    ctes.extend(ledger.posting_ctes())
    count = (
        select(func.count()).select_from(completed) if completed is not None else select(literal(0))
    )
    return count.add_cte(*ctes)


def sale_facts(
    conn: Connection,
    content_id: str,
    share_code: str | None,
    buyer: BuyerRef | None,
    storefront_id: str,
) -> Row[Any] | None:
    """Everything a sale needs to know before the upline, in one indexed query: the
    content, its effective plan (SPEC 2: the item's own latest, else the artist's
    latest), the share link's owner when the link is active and of the same artist,
    whether the link carries an active fraud signal, and the buyer if already a fan
    (``buyer`` None: no buyer read, its columns NULL)."""
    identity = ("fan_id", None) if buyer is None else buyer_identity(buyer)
    if identity is None:
        raise no_buyer()
    kind, value = identity
    return conn.execute(
        _sale_facts_query(kind),
        {
            "content_id": content_id,
            "own_scope": plans.content_scope(content_id),
            "code": share_code,
            "buyer": value,
            "storefront_id": storefront_id,
        },
    ).first()


def buyer_identity(ref: BuyerRef) -> tuple[str, str | None] | None:
    """How the buyer is looked up: ``(kind, value)``, kind ``fan_id``, ``email``
    (normalized) or ``external_id``; None when the sale names no buyer."""
    if ref.fan_id is not None:
        return "fan_id", ref.fan_id
    if ref.email is not None:
        return "email", graph.normalize_email(ref.email)
    if ref.external_id is not None:
        return "external_id", ref.external_id
    return None


def no_buyer() -> ValidationFailed:
    """A sale that names no buyer (the API's schema refuses it first)."""
    return ValidationFailed(
        "name the buyer", fields={"buyer": ["give fan_id, email or external_id"]}
    )


def unknown_buyer() -> ValidationFailed:
    return ValidationFailed(
        "the buyer's fan_id names no fan", fields={"buyer": {"fan_id": ["unknown fan"]}}
    )


@cache
def _sale_facts_query(buyer_kind: str) -> Select[Any]:
    """Built once per way of naming the buyer: constructing a statement of this size
    costs more than running it, and a built statement keeps its cache key."""
    own_scope, code = bindparam("own_scope", type_=String), bindparam("code", type_=String)

    plan_id = plans.effective_plan_id(
        own_scope, literal(plans.artist_scope("")) + Content.artist_id
    )
    link_owner = (
        select(ShareLink.fan_id)
        .where(
            ShareLink.code == code,
            ShareLink.active.is_(True),
            ShareLink.artist_id == Content.artist_id,
        )
        .correlate(Content)
        .scalar_subquery()
    )
    link_flagged = carries_active_signal("link", code)
    buyer_fan = aliased(Fan, name="buyer")
    found = {
        "fan_id": buyer_fan.id == bindparam("buyer"),
        "email": buyer_fan.email == bindparam("buyer"),
        "external_id": and_(
            buyer_fan.storefront_id == bindparam("storefront_id"),
            buyer_fan.external_id == bindparam("buyer"),
        ),
    }[buyer_kind]
    return (
        select(
            Content.artist_id,
            Content.currency,
            RewardPlan.id.label("plan_id"),
            RewardPlan.version.label("plan_version"),
            RewardPlan.level_rates_bps,
            RewardPlan.hold_days,
            link_owner.label("link_owner"),
            link_flagged.label("link_flagged"),
            buyer_fan.id.label("buyer_id"),
            buyer_fan.sponsor_id.label("buyer_sponsor"),
            buyer_fan.email.label("buyer_email"),
        )
        .select_from(Content)
        .outerjoin(RewardPlan, RewardPlan.id == plan_id)
        .outerjoin(buyer_fan, found)
        .where(Content.id == bindparam("content_id"))
    )


@dataclass(frozen=True)
class Upline:
    """Level 1 (depth 0) and its ancestors, with what the fraud checks need."""

    fan_id: str
    email: str | None
    signup_ip_hash: str | None
    flagged: bool


def read_upline(conn: Connection, level1: str, depth: int) -> list[Upline]:
    """``level1`` and up to ``depth`` of its ancestors, nearest first: one indexed query
    on the closure table, each fan with whether it carries an active fraud signal."""
    rows = conn.execute(_upline_query(), {"level1": level1, "depth": depth}).all()
    assert rows and rows[0][1] == level1, "level 1 names a fan (foreign keys guarantee it)"
    return [Upline(row[1], row[2], row[3], bool(row[4])) for row in rows]


@cache
def _upline_query() -> CompoundSelect[Any]:
    level1 = bindparam("level1", type_=String)
    # Typed loosely: the ancestors' half has NULL where level 1 has its e-mail and address.
    first: Select[*tuple[Any, ...]] = select(
        literal(0).label("depth"),
        Fan.id,
        Fan.email,
        Fan.signup_ip_hash,
        carries_active_signal("fan", Fan.id).label("flagged"),
    ).where(Fan.id == level1)
    above: Select[*tuple[Any, ...]] = graph.ancestors_of(level1, bindparam("depth")).add_columns(
        null(), null(), carries_active_signal("fan", FanAncestor.ancestor_id)
    )
    return union_all(first, above).order_by("depth")


def _buyer(
    session: Session,
    sale: Row[Any],
    ref: BuyerRef,
    storefront_id: str,
    events_out: list[events.Pending],
) -> tuple[str, str | None, str | None]:
    """The buyer's fan id, sponsor and email; a buyer who is not a fan yet joins the
    graph under whoever brought them, and a sponsor-less fan gets the link's owner."""
    if sale.buyer_id is not None:
        sponsor = graph.sponsor_by_first_touch(
            session, sale.buyer_id, sale.buyer_sponsor, sale.link_owner
        )
        if sponsor != sale.buyer_sponsor:
            session.flush()
        return sale.buyer_id, sponsor, sale.buyer_email
    if ref.fan_id is not None:
        raise unknown_buyer()
    fan = graph.create_fan(
        session,
        handle=f"buyer-{random_token(12)}",
        email=ref.email,
        sponsor_id=sale.link_owner,
        storefront_id=storefront_id if ref.external_id is not None else None,
        external_id=ref.external_id,
        enrolled_by=storefront_id,
        events_out=events_out,
    )
    session.flush()
    return fan.id, fan.sponsor_id, fan.email


def get_purchase(
    session: Session, purchase_id: str, *, storefront_id: str | None
) -> dict[str, Any]:
    """A purchase's receipt; ``storefront_id`` limits it to the storefront that recorded it."""
    conn = session.connection()
    purchase = conn.execute(select(table(Purchase)).where(Purchase.id == purchase_id)).first()
    if purchase is None or (storefront_id is not None and purchase.storefront_id != storefront_id):
        raise NotFound(f"purchase {purchase_id} does not exist")
    rewards = conn.execute(
        select(Reward.level, Reward.fan_id, Reward.amount)
        .where(Reward.purchase_id == purchase_id)
        .order_by(Reward.level)
    )
    link_owner = None
    if purchase.share_code is not None:
        link_owner = conn.execute(
            select(ShareLink.fan_id).where(ShareLink.code == purchase.share_code)
        ).scalar()
    level1 = purchase.chain[0] if purchase.chain else None
    return receipt(
        purchase._mapping,
        [RewardLine(*row) for row in rewards],
        attribution=how_attributed(level1, link_owner),
    )
