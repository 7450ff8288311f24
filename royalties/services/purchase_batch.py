"""Recording a batch of sales (``POST /v1/purchases/batch``): each sale exactly as
``record_purchase`` would record it alone, in the order given, in a few statements for
the whole batch instead of a dozen round trips and a commit per sale.

How: the batch is cut into *segments* of consecutive sales that cannot affect each
other: no idempotency key twice, and no sale by a buyer that an earlier sale of the
segment enrolls (a fan who buys again, or many times, is no reason to cut). For a
segment, in one transaction:

1. the keys are claimed together (``idempotency.claim_many``);
2. the facts of each distinct content and share code, the buyers, the sponsors of new
   buyers and each distinct upline are read once each;
3. each sale is checked, attributed and split by the same code as a single purchase
   (``purchases.checked_sale``, ``purchases.book``), in order;
4. new buyers, purchases, rewards, ledger postings, events and idempotency records are
   written in one statement per table (``graph.insert_fans``,
   ``purchases.write_bookings``), and the segment commits.

A sale that fails its checks (unknown content, another currency, a key reused with
another body, ...) writes nothing and gets the error its single purchase would get;
the others go on. What the fast path does not do itself goes through
``record_purchase``, one sale and one transaction at a time, at its place in the order:

- a buyer who is a fan without a sponsor, buying through someone's link (first touch
  may give it a sponsor, which changes uplines the next sales read): the segment is
  written up to that sale, the sale is recorded alone, and a new segment starts after;
- a segment whose writes fail (a concurrent request took a new buyer's email, say):
  it is rolled back whole and each of its sales is recorded alone.

So the answers and the rows are the ones the same sales sent one by one would give.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.orm import Session

from royalties import events, graph, idempotency
from royalties.attribution import level_one
from royalties.db import utcnow
from royalties.errors import RoyaltiesError
from royalties.ids import random_token
from royalties.models import Fan
from royalties.services._tx import unit_of_work
from royalties.services.purchases import (
    Booking,
    BuyerRef,
    SaleRequest,
    Upline,
    book,
    buyer_identity,
    checked_sale,
    no_buyer,
    read_upline,
    record_purchase,
    sale_facts,
    unknown_buyer,
    write_bookings,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSale:
    """One sale of a batch: the sale, its idempotency key, and the fingerprint of the
    request it stands for (``idempotency.fingerprint``)."""

    sale: SaleRequest
    key: str
    request_hash: str


@dataclass(frozen=True)
class Outcome:
    """A sale's answer: its receipt (``replayed`` when its key already had it), or the
    error its single purchase would have raised."""

    body: dict[str, Any] | None = None
    replayed: bool = False
    error: Exception | None = None


def record_batch(
    session: Session,
    sales: Sequence[BatchSale],
    *,
    storefront_id: str,
    client_id: str,
    scope: str,
    fee_bps: int = 0,
) -> list[Outcome]:
    """Record these sales in order, each under its key (claimed in ``scope``, the single
    purchase's, so that either endpoint replays the other); one outcome per sale, in
    order. Commits (several times)."""
    batch = _Batch(session, storefront_id, client_id, scope, fee_bps)
    outcomes: list[Outcome] = []
    while len(outcomes) < len(sales):
        done = len(outcomes)
        outcomes += batch.segment(_independent_run(sales, done))
        if len(outcomes) < len(sales) and batch.alone_next:
            outcomes.append(batch.alone(sales[len(outcomes)]))
        assert len(outcomes) > done, "every round records at least one sale"
    return outcomes


def _independent_run(sales: Sequence[BatchSale], start: int) -> list[BatchSale]:
    """The longest run of sales from ``start`` with no idempotency key twice (the
    segment ends earlier at a new buyer's second sale: see ``_Batch._segment``)."""
    keys: set[str] = set()
    run = []
    for item in sales[start:]:
        if item.key in keys:
            break
        keys.add(item.key)
        run.append(item)
    return run


@dataclass
class _Planned:
    """A sale of the segment, checked, with what its booking needs."""

    item: BatchSale
    claim: idempotency.Claim
    facts: Row[Any]
    amount: int
    buyer: tuple[str, str | None, str | None] | None  # (id, sponsor, email) when a fan
    now: datetime


class _Batch:
    def __init__(
        self, session: Session, storefront_id: str, client_id: str, scope: str, fee_bps: int
    ) -> None:
        self.session = session
        self.storefront_id = storefront_id
        self.client_id = client_id
        self.scope = scope
        self.fee_bps = fee_bps
        self.alone_next = False  # the sale after the last segment goes alone

    def segment(self, run: Sequence[BatchSale]) -> list[Outcome]:
        """Record the first sales of ``run`` together, up to (not including) one that
        must go alone (``alone_next`` then says so) or a new buyer's second sale; their
        outcomes."""
        self.alone_next = False
        try:
            with unit_of_work(self.session):
                return self._segment(run)
        except Exception:  # rolled back: each of the run's sales alone, as they came
            log.warning(
                "a batch's sales written together failed; recording each alone", exc_info=True
            )
            self.alone_next = False
            return [self.alone(item) for item in run]

    def _segment(self, run: Sequence[BatchSale]) -> list[Outcome]:
        session = self.session
        conn = session.connection()
        decided = idempotency.claim_many(
            session,
            client_id=self.client_id,
            requests=[(item.key, self.scope, item.request_hash) for item in run],
        )
        facts_of: dict[tuple[str, str | None], Row[Any] | None] = {}
        buyers = _buyers(conn, self.storefront_id, [item.sale.buyer for item in run])
        outcomes: list[Outcome | _Planned] = []
        enrolled: set[tuple[str, str | None]] = set()  # new buyers of this segment
        for item, decision in zip(run, decided, strict=True):
            if isinstance(decision, idempotency.Replay):
                outcomes.append(Outcome(decision.body, replayed=True))
                continue
            if isinstance(decision, Exception):
                outcomes.append(Outcome(error=decision))
                continue
            sale = item.sale
            try:
                identity = buyer_identity(sale.buyer)  # checked first, as the single purchase does
                if identity is None:
                    raise no_buyer()
                if identity in enrolled:
                    break  # a fan from now on: the next segment reads it as one
                sold = (sale.content_id, sale.share_code)
                if sold not in facts_of:  # read once for the segment's sales of it
                    facts_of[sold] = sale_facts(conn, *sold, None, self.storefront_id)
                facts, amount = checked_sale(facts_of[sold], sale)
                buyer = buyers.get(identity)
                if buyer is None and sale.buyer.fan_id is not None:
                    raise unknown_buyer()
            except RoyaltiesError as error:
                outcomes.append(Outcome(error=error))
                continue
            if buyer is not None and graph.first_touch_applies(
                buyer[0], buyer[1], facts.link_owner
            ):
                self.alone_next = True
                break
            if buyer is None:
                enrolled.add(identity)
            outcomes.append(_Planned(item, decision, facts, amount, buyer, utcnow()))
        bookings = iter(self._book([entry for entry in outcomes if isinstance(entry, _Planned)]))
        answers = [
            Outcome(next(bookings).body) if isinstance(entry, _Planned) else entry
            for entry in outcomes
        ]
        return answers

    def _book(self, planned: Sequence[_Planned]) -> list[Booking]:
        """Each planned sale's booking, new buyers written first."""
        session, conn = self.session, self.session.connection()
        new_sponsors = {
            entry.facts.link_owner
            for entry in planned
            if entry.buyer is None and entry.facts.link_owner is not None
        }
        if new_sponsors:
            graph.lock_for_new_fans(session)
        sponsors = graph.sponsors(session, new_sponsors)
        uplines: dict[tuple[str, int], list[Upline]] = {}
        fans, closure, bookings = [], [], []
        for entry in planned:
            sale, facts = entry.item.sale, entry.facts
            pending: list[events.Pending] = []
            if entry.buyer is None:
                sponsor = sponsors[facts.link_owner] if facts.link_owner else None
                row, ancestors = graph.new_fan_row(
                    handle=f"buyer-{random_token(12)}",
                    email=sale.buyer.email,
                    sponsor=sponsor,
                    storefront_id=self.storefront_id if sale.buyer.external_id else None,
                    external_id=sale.buyer.external_id,
                    now=entry.now,
                )
                fans.append(row)
                closure += ancestors
                pending.append(
                    graph.enrolled_event(
                        SimpleNamespace(**row, notify_email=True), self.storefront_id
                    )
                )
                buyer_id, buyer_sponsor, buyer_email = row["id"], row["sponsor_id"], row["email"]
            else:
                buyer_id, buyer_sponsor, buyer_email = entry.buyer
            level1 = level_one(facts.link_owner, buyer_id, buyer_sponsor)
            depth = len(facts.level_rates_bps) - 1
            if level1 and (level1, depth) not in uplines:
                uplines[level1, depth] = read_upline(conn, level1, depth)
            upline = uplines[level1, depth] if level1 else []
            booking = book(
                session,
                facts,
                sale,
                storefront_id=self.storefront_id,
                amount=entry.amount,
                buyer_id=buyer_id,
                buyer_email=buyer_email,
                level1=level1,
                upline=upline,
                fee_bps=self.fee_bps,
                pending=pending,
                claim=entry.claim,
                now=entry.now,
            )
            bookings.append(booking)
        graph.insert_fans(session, fans, closure)
        write_bookings(session, bookings)
        return bookings

    def alone(self, item: BatchSale) -> Outcome:
        """One sale in its own transaction, through ``record_purchase``."""
        session, sale = self.session, item.sale
        try:
            body, replayed = idempotency.once(
                session,
                lambda claim: record_purchase(
                    session,
                    storefront_id=self.storefront_id,
                    content_id=sale.content_id,
                    amount=sale.amount,
                    currency=sale.currency,
                    buyer=sale.buyer,
                    share_code=sale.share_code,
                    fee_bps=self.fee_bps,
                    client_ip_hash=sale.client_ip_hash,
                    claim=claim,
                ),
                client_id=self.client_id,
                key=item.key,
                scope=self.scope,
                request_hash=item.request_hash,
            )
        except Exception as error:  # the sale's own answer; the next goes on
            session.rollback()
            return Outcome(error=error)
        return Outcome(body, replayed=replayed)


def _buyers(
    conn: Connection, storefront_id: str, refs: Sequence[BuyerRef]
) -> dict[tuple[str, str | None], tuple[str, str | None, str | None]]:
    """The buyers that are fans already, by how the sales name them: one read per way
    of naming (fan id, email, the storefront's external id)."""
    wanted: dict[str, set[str]] = {"fan_id": set(), "email": set(), "external_id": set()}
    for ref in refs:
        identity = buyer_identity(ref)
        if identity is not None and identity[1] is not None:
            wanted[identity[0]].add(identity[1])
    found: dict[tuple[str, str | None], tuple[str, str | None, str | None]] = {}
    for kind, column in (
        ("fan_id", Fan.id),
        ("email", Fan.email),
        ("external_id", Fan.external_id),
    ):
        if not wanted[kind]:
            continue
        query = select(Fan.id, Fan.sponsor_id, Fan.email, column).where(column.in_(wanted[kind]))
        if kind == "external_id":  # a storefront's own names for its customers
            query = query.where(Fan.storefront_id == storefront_id)
        for fan_id, sponsor, email, value in conn.execute(query):
            found[kind, value] = (fan_id, sponsor, email)
    return found
