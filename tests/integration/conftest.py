"""Builders shared by the money, holds and concurrency tests: real services, real rows.

``build`` makes artists, storefronts, content, plans, fans and share links through the
service layer on the test's own session, each committed, each with fresh ids and
handles, so a test (or a Hypothesis example) can create as many as it likes in one
database.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import graph, ledger
from royalties.models import Fan, LedgerEntry, LedgerTransaction, Reward
from royalties.services import accounts, catalog, links

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_seq)}x{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Item:
    id: str
    artist_id: str
    price: int
    currency: str


class Builder:
    def __init__(self, session: Session) -> None:
        self.session = session

    def artist(self, name: str = "Ada") -> str:
        return accounts.create_artist(self.session, name=name).id

    def storefront(self, name: str = "Shop") -> str:
        return accounts.create_storefront(self.session, name=name, base_url="https://shop.test").id

    def content(self, artist_id: str, price: int = 1999, currency: str = "USD") -> Item:
        item = catalog.create_content(
            self.session,
            artist_id=artist_id,
            title="Song",
            kind="track",
            price=price,
            currency=currency,
            storefront_url="https://shop.test/song",
        )
        return Item(item.id, artist_id, item.price, item.currency)

    def plan(self, artist_id: str, rates: Sequence[int], hold_days: int) -> int:
        plan = catalog.set_artist_plan(
            self.session, artist_id=artist_id, level_rates_bps=list(rates), hold_days=hold_days
        )
        return plan.version

    def fan(self, sponsor: str | None = None, email: str | None = None) -> str:
        fan = graph.create_fan(self.session, handle=unique("fan"), email=email, sponsor_id=sponsor)
        self.session.commit()
        return fan.id

    def chain(self, n: int) -> list[str]:
        """``n`` fans, each sponsored by the one before (the first is a root)."""
        fans: list[str] = []
        for _ in range(n):
            fans.append(self.fan(fans[-1] if fans else None))
        return fans

    def link(self, fan_id: str, content_id: str) -> str:
        return links.create_share_link(self.session, fan_id=fan_id, content_id=content_id).code

    def disable(self, code: str) -> None:
        links.disable_share_link(self.session, code=code, acting_role="admin", acting_owner_id=None)


@pytest.fixture
def build(session: Session) -> Builder:
    return Builder(session)


# ---- independent readings of the database ------------------------------------------


def sponsors(session: Session) -> dict[str, str | None]:
    return dict(session.execute(select(Fan.id, Fan.sponsor_id)).all())  # type: ignore[arg-type]


def walk(sponsor_of: dict[str, str | None], fan_id: str, depth: int = 5) -> list[str]:
    """The upline by following sponsor pointers (fails on a loop)."""
    out: list[str] = []
    seen = {fan_id}
    current = sponsor_of[fan_id]
    while current is not None and len(out) < depth:
        assert current not in seen, f"loop through {current}"
        seen.add(current)
        out.append(current)
        current = sponsor_of[current]
    return out


def assert_forest(session: Session, fans: Sequence[str] | None = None) -> None:
    """Every walk ends, ``root_id`` is the walk's end, and the closure table equals it."""
    session.rollback()
    sponsor_of = sponsors(session)
    roots = dict(session.execute(select(Fan.id, Fan.root_id)).all())
    for fan in fans if fans is not None else list(sponsor_of):
        full = walk(sponsor_of, fan, depth=10**6)
        assert roots[fan] == (full[-1] if full else fan), f"root of {fan}"
        assert graph.upline(session, fan) == full[:5], f"closure table of {fan}"
    session.rollback()


def mature_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "mature")
        )
        or 0
    )


def balances_of(session: Session, fan_id: str) -> dict[str, tuple[int, int, int]]:
    """``{currency: (pending, available, paid)}`` straight from the ledger (no maturing)."""
    return {
        b.currency: (b.pending, b.available, b.paid) for b in ledger.fan_balances(session, fan_id)
    }


def earned_from_rewards(session: Session, fan_id: str) -> dict[str, int]:
    """What the reward rows say a fan holds: sum of ``amount - reversed_amount``."""
    rows = session.execute(
        select(Reward.currency, func.sum(Reward.amount - Reward.reversed_amount))
        .where(Reward.fan_id == fan_id)
        .group_by(Reward.currency)
    ).all()
    return {currency: int(total) for currency, total in rows}


def currency_sums(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.amount)).group_by(LedgerEntry.currency)
    ).all()
    return {currency: int(total) for currency, total in rows}


def ledger_clean(session: Session) -> None:
    session.rollback()
    assert ledger.check(session) == []
    assert all(total == 0 for total in currency_sums(session).values())
    session.rollback()
