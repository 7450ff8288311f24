"""Properties of the money, over random scenarios run through the real services.

Each Hypothesis example builds its own world in the test's database (fresh artists,
storefront, fans and links, so examples never share an account): a random forest of
fans, a random plan and platform fee, random sales by random buyers through random share
codes, random refund sequences, and maturing at random moments. A small model of the
SPEC (sections 2 to 5) predicts every sponsor, chain, reward and reversal; the database
must agree with it to the cent, and the ledger must stay sound throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import graph, ledger
from royalties import rewards as holds
from royalties.db import utcnow
from royalties.errors import RefundError
from royalties.models import Fan, Purchase, Refund, Reward
from royalties.services import balances, purchases, refunds
from royalties.services.purchases import BuyerRef
from tests.integration.conftest import (
    Builder,
    balances_of,
    earned_from_rewards,
    ledger_clean,
    unique,
)

CURRENCIES = ("USD", "EUR", "JPY")
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

amounts = st.one_of(
    st.integers(1, 10**9), st.sampled_from([1, 2, 3, 99, 1999, 10**4, 10**9 - 1, 10**9])
)


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[int], int]:
    """1 to 5 rates summing to at most 5000 bps, and a hold of 0 or some days."""
    levels = draw(st.sampled_from([5, 5, 1, 2, 3, 4]))
    rates = draw(st.lists(st.integers(0, 5000), min_size=levels, max_size=levels))
    total = sum(rates)
    if total > 5000:
        rates = [r * 5000 // total for r in rates]
    return rates, draw(st.sampled_from([0, 0, 1, 7, 30]))


@dataclass
class Link:
    code: str
    owner: str
    kind: str  # "active" (artist A's content), "other_artist", "disabled"


@dataclass
class Sale:
    id: str
    buyer: str
    amount: int
    rewards: dict[str, int]  # fan -> reward, as the model predicts it
    fee: int
    artist_share: int
    refunded: int = 0


@dataclass
class World:
    """The example's own world and the model's view of it."""

    artist: str
    storefront: str
    item: str
    currency: str
    fee_bps: int
    rates: list[int]
    hold_days: int
    plan_version: int
    sponsor_of: dict[str, str | None] = field(default_factory=dict)
    email_of: dict[str, str] = field(default_factory=dict)
    external: dict[str, str] = field(default_factory=dict)  # external id -> fan
    links: list[Link] = field(default_factory=list)
    sales: list[Sale] = field(default_factory=list)
    platform_before: int = 0

    def upline(self, fan: str) -> list[str]:
        out, current = [], self.sponsor_of[fan]
        while current is not None:
            assert current not in out and current != fan, "the model found a loop"
            out.append(current)
            current = self.sponsor_of[current]
        return out

    def root(self, fan: str) -> str:
        up = self.upline(fan)
        return up[-1] if up else fan


def platform_fees(session: Session, currency: str) -> int:
    return ledger.balance(session, "platform_fees", ledger.PLATFORM, currency)


def build_world(session: Session, build: Builder, data: st.DataObject) -> World:
    session.rollback()
    artist, other_artist = build.artist(), build.artist("Bo")
    currency = data.draw(st.sampled_from(CURRENCIES), label="currency")
    item = build.content(artist, currency=currency)
    other_item = build.content(other_artist, currency=data.draw(st.sampled_from(CURRENCIES)))
    rates, hold_days = data.draw(plans(), label="plan")
    world = World(
        artist=artist,
        storefront=build.storefront(),
        item=item.id,
        currency=currency,
        fee_bps=data.draw(st.integers(0, 1000), label="fee_bps"),
        rates=rates,
        hold_days=hold_days,
        plan_version=build.plan(artist, rates, hold_days),
        platform_before=platform_fees(session, currency),
    )
    shapes = data.draw(
        st.lists(
            st.sampled_from(["previous", "any", "root", "any", "previous"]), min_size=2, max_size=6
        ),
        label="forest",
    )
    spine = data.draw(st.integers(1, 7), label="spine")  # one deep chain, then the rest
    fans: list[str] = []
    for shape in ["root", *["previous"] * (spine - 1), *shapes]:
        if shape == "previous" and fans:
            sponsor: str | None = fans[-1]
        elif shape == "any" and fans:
            sponsor = data.draw(st.sampled_from(fans))
        else:
            sponsor = None
        email = f"{unique('e')}@Example.test" if data.draw(st.booleans()) else None
        fan = build.fan(sponsor, email)
        fans.append(fan)
        world.sponsor_of[fan] = sponsor
        if email:
            world.email_of[fan] = email
    for fan in [fans[spine - 1], *fans]:
        kind = data.draw(
            st.sampled_from(["active", "active", "none", "active", "other_artist", "disabled"])
        )
        if kind == "none":
            continue
        code = build.link(fan, other_item.id if kind == "other_artist" else item.id)
        if kind == "disabled":
            build.disable(code)
        world.links.append(Link(code, fan, kind))
    return world


def random_case(data: st.DataObject, text: str) -> str:
    how = data.draw(st.sampled_from(["as is", "lower", "upper", "swapcase"]), label="case")
    return text if how == "as is" else getattr(text, how)()


def one_sale(session: Session, build: Builder, world: World, data: st.DataObject) -> None:
    """Draw a buyer, a share code and an amount; predict the sale; record it; compare."""
    if data.draw(st.integers(0, 5), label="replan?") == 0:
        world.rates, world.hold_days = data.draw(plans(), label="new plan")
        world.plan_version = build.plan(world.artist, world.rates, world.hold_days)

    kinds = ["inside_chain", "root", "new_email", "new_external", "inside_chain", "fan_id"]
    if world.email_of:
        kinds.append("email")
    if world.external:
        kinds.append("old_external")
    kind = data.draw(st.sampled_from(kinds), label="buyer")
    buyer: str | None = None
    link: Link | None = None
    code: str | None = None
    active = [x for x in world.links if x.kind == "active" and world.upline(x.owner)]
    if kind == "inside_chain" and active:
        # a fan buys through a link of someone in its own downline: it sits in the chain
        link = data.draw(st.sampled_from(active))
        buyer = data.draw(st.sampled_from(world.upline(link.owner)))
        ref = BuyerRef(fan_id=buyer)
    elif kind == "root":  # a root may get a sponsor through an attributed purchase
        roots = [fan for fan, sponsor in world.sponsor_of.items() if sponsor is None]
        buyer = data.draw(st.sampled_from(roots))
        ref = BuyerRef(fan_id=buyer)
    elif kind in ("fan_id", "inside_chain"):
        buyer = data.draw(st.sampled_from(list(world.sponsor_of)))
        ref = BuyerRef(fan_id=buyer)
    elif kind == "email":
        buyer = data.draw(st.sampled_from(list(world.email_of)))
        ref = BuyerRef(email=random_case(data, world.email_of[buyer]))
    elif kind == "old_external":
        external = data.draw(st.sampled_from(list(world.external)))
        buyer, ref = world.external[external], BuyerRef(external_id=external)
    elif kind == "new_email":
        ref = BuyerRef(email=f"{unique('new')}@example.test")
    else:
        ref = BuyerRef(external_id=unique("ext"))

    code_kind = data.draw(
        st.sampled_from(
            ["active", "active", "active", "own", "none", "other_artist", "disabled", "unknown"]
        ),
        label="share code",
    )
    if link is not None:
        pass  # the buyer was picked from the upline of this link's owner
    elif code_kind == "own" and buyer is not None:
        link = Link(build.link(buyer, world.item), buyer, "active")
        world.links.append(link)
    elif code_kind in ("active", "other_artist", "disabled"):
        candidates = [x for x in world.links if x.kind == code_kind]
        if candidates:
            link = data.draw(st.sampled_from(candidates))
    elif code_kind == "unknown":
        code = "zzzzzzzzzz"
    code = link.code if link else code
    amount = data.draw(amounts, label="amount")
    currency = data.draw(st.sampled_from([world.currency, world.currency.lower()]))

    receipt = purchases.record_purchase(
        session,
        storefront_id=world.storefront,
        content_id=world.item,
        amount=amount,
        currency=currency,
        buyer=ref,
        share_code=code,
        fee_bps=world.fee_bps,
    )

    # Who the buyer is (SPEC 3.5) and the sponsor rule (SPEC 2).
    owner = link.owner if link and link.kind == "active" else None
    if buyer is None:
        buyer = receipt["buyer_id"]
        assert buyer not in world.sponsor_of, "a new buyer must be a new fan"
        world.sponsor_of[buyer] = owner
        if ref.external_id:
            world.external[ref.external_id] = buyer
        if ref.email:
            world.email_of[buyer] = ref.email.lower()
    else:
        assert receipt["buyer_id"] == buyer
        if (
            owner is not None
            and owner != buyer
            and world.sponsor_of[buyer] is None
            and world.root(owner) != buyer
        ):
            world.sponsor_of[buyer] = owner
            event("a root got a sponsor through an attributed purchase")
        elif owner is not None and world.sponsor_of[buyer] is None and owner != buyer:
            event("a re-sponsoring that would close a loop was refused")
    session.rollback()
    assert session.get(Fan, buyer, populate_existing=True).sponsor_id == world.sponsor_of[buyer]

    # The chain (SPEC 3) and the split (SPEC 4), computed independently.
    level1 = owner if owner is not None and owner != buyer else world.sponsor_of[buyer]
    chain = [level1, *world.upline(level1)][: len(world.rates)] if level1 else []
    expected = [
        (level, fan, amount * rate // 10_000)
        for level, (fan, rate) in enumerate(zip(chain, world.rates, strict=False), start=1)
        if fan != buyer and amount * rate // 10_000 > 0
    ]
    fee = amount * world.fee_bps // 10_000
    got = [(r["level"], r["fan_id"], r["amount"]) for r in receipt["rewards"]]
    assert got == expected
    assert receipt["fee"] == fee
    assert receipt["artist_share"] == amount - fee - sum(r for *_, r in expected)
    assert receipt["artist_share"] + sum(r for *_, r in got) + receipt["fee"] == amount
    assert buyer not in {fan for _, fan, _ in got}, "a buyer never earns on its own purchase"
    assert receipt["plan_version"] == world.plan_version
    event(f"chain of {len(chain)}, buyer in it: {buyer in chain}")
    assert receipt["currency"] == world.currency
    world.sales.append(
        Sale(
            receipt["id"],
            buyer,
            amount,
            {fan: reward for _, fan, reward in expected},
            fee,
            receipt["artist_share"],
        )
    )


def refund(session: Session, world: World, sale: Sale, amount: int) -> None:
    refunds.refund_purchase(
        session, storefront_id=world.storefront, purchase_id=sale.id, amount=amount
    )
    sale.refunded += amount


def maybe_mature(session: Session, world: World, data: st.DataObject) -> None:
    """Sometimes let holds pass: the whole job, or one fan's balance read."""
    how = data.draw(st.sampled_from(["no", "no", "job", "read"]), label="mature")
    later = utcnow() + timedelta(days=world.hold_days + 1)
    if how == "job":
        holds.mature_due(session, now=later)
        session.commit()
    elif how == "read":
        balances.fan_balances(
            session, data.draw(st.sampled_from(list(world.sponsor_of))), now=later
        )


def some_refunds(session: Session, world: World, data: st.DataObject) -> None:
    """Per sale: a random sequence of partial refunds, some ending in a full refund."""
    for sale in world.sales:
        steps = data.draw(st.integers(0, 3), label="refunds")
        for _ in range(steps):
            left = sale.amount - sale.refunded
            if left == 0:
                break
            amount = data.draw(
                st.one_of(st.integers(1, left), st.just(left), st.just(1)), label="refund"
            )
            refund(session, world, sale, amount)
            maybe_mature(session, world, data)
        if data.draw(st.integers(0, 3)) == 0 and sale.refunded < sale.amount:
            with pytest.raises(RefundError):  # more than is left: refused, nothing changes
                refunds.refund_purchase(
                    session,
                    storefront_id=world.storefront,
                    purchase_id=sale.id,
                    amount=sale.amount - sale.refunded + 1,
                )


def nonzero(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v != 0}


def check_books(session: Session, world: World) -> None:
    """Everything the database holds agrees with the model and with itself."""
    session.rollback()
    ledger_clean(session)
    expected_fan: dict[str, int] = dict.fromkeys(world.sponsor_of, 0)
    receivable = artist = fees = 0
    for sale in world.sales:
        purchase = session.get(Purchase, sale.id, populate_existing=True)
        rows = session.scalars(select(Reward).where(Reward.purchase_id == sale.id)).all()
        assert purchase.artist_share + sum(r.amount for r in rows) + purchase.fee == sale.amount
        assert purchase.refunded_amount == sale.refunded
        assert sale.buyer not in {r.fan_id for r in rows}
        assert {r.fan_id: r.amount for r in rows} == sale.rewards
        r_over_a = (sale.refunded, sale.amount)
        for row in rows:  # cumulative and exact: floor(part * R / A)
            assert row.reversed_amount == row.amount * r_over_a[0] // r_over_a[1]
            expected_fan[row.fan_id] += row.amount - row.reversed_amount
        done = session.scalars(select(Refund).where(Refund.purchase_id == sale.id)).all()
        assert sum(r.amount for r in done) == sale.refunded
        fee_back = sum(r.fee_reversed for r in done)
        assert fee_back == sale.fee * sale.refunded // sale.amount
        reward_back = sum(r.reversed_amount for r in rows)
        assert sum(r.artist_reversed for r in done) == sale.refunded - fee_back - reward_back
        receivable -= sale.amount - sale.refunded
        artist += sale.artist_share - (sale.refunded - fee_back - reward_back)
        fees += sale.fee - fee_back
    for fan, owed in expected_fan.items():
        held = {c: p + a + paid for c, (p, a, paid) in balances_of(session, fan).items()}
        assert nonzero(held) == nonzero(earned_from_rewards(session, fan)), fan
        assert nonzero(held) == nonzero({world.currency: owed}), fan
    c = world.currency
    assert ledger.balance(session, "storefront_receivable", world.storefront, c) == receivable
    assert ledger.balance(session, "artist_earnings", world.artist, c) == artist
    assert platform_fees(session, c) - world.platform_before == fees
    session.rollback()


def run_scenario(session: Session, build: Builder, data: st.DataObject) -> World:
    world = build_world(session, build, data)
    for _ in range(data.draw(st.integers(1, 6), label="sales")):
        one_sale(session, build, world, data)
        maybe_mature(session, world, data)
    some_refunds(session, world, data)
    return world


@PROPERTY_SETTINGS
@given(data=st.data())
def test_random_sales_and_refunds_keep_every_cent_accounted_for(session, build, data):
    world = run_scenario(session, build, data)
    check_books(session, world)
    assert_graph_matches_model(session, world)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_refunding_every_sale_in_full_returns_every_balance_to_zero(session, build, data):
    world = run_scenario(session, build, data)
    for sale in world.sales:
        if sale.refunded < sale.amount:
            refund(session, world, sale, sale.amount - sale.refunded)
        maybe_mature(session, world, data)
    check_books(session, world)
    for fan in world.sponsor_of:
        for currency, (pending, available, paid) in balances_of(session, fan).items():
            assert (currency, pending, available, paid) == (currency, 0, 0, 0), fan
    c = world.currency
    assert ledger.balance(session, "storefront_receivable", world.storefront, c) == 0
    assert ledger.balance(session, "artist_earnings", world.artist, c) == 0
    assert platform_fees(session, c) == world.platform_before
    session.rollback()


def assert_graph_matches_model(session: Session, world: World) -> None:
    """The sponsors the model predicts are the database's, and uplines equal walks."""
    session.rollback()
    for fan, sponsor in world.sponsor_of.items():
        assert session.get(Fan, fan, populate_existing=True).sponsor_id == sponsor
        assert graph.upline(session, fan) == world.upline(fan)[:5]
        assert session.get(Fan, fan).root_id == world.root(fan)
    session.rollback()
