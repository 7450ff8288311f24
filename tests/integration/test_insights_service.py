"""The insights services on a real database: figures from recorded sales, the cache,
program return over a period, the simulator and lifetime values."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from royalties import insights as analytics
from royalties.errors import NotFound, PlanError, ValidationFailed
from royalties.models import InsightsCache, Reward
from royalties.services import insights
from royalties.services.purchases import BuyerRef, record_purchase
from royalties.services.refunds import refund_purchase
from tests.helpers import row_counts

T0 = datetime(2026, 5, 1, 10, tzinfo=UTC)


class World:
    """SPEC 9's chain F1 -> .. -> F6 selling one artist's 1999 USD track."""

    def __init__(self, build, session):
        self.session = session
        self.artist = build.artist()
        self.shop = build.storefront()
        self.item = build.content(self.artist, price=1999)
        self.fans = build.chain(6)
        self.code = build.link(self.fans[-1], self.item.id)
        self.n = 0

    def sell(self, *, code=True, amount=1999, at=T0, buyer=None):
        self.n += 1
        return record_purchase(
            self.session,
            storefront_id=self.shop,
            content_id=self.item.id,
            amount=amount,
            currency="USD",
            buyer=BuyerRef(email=buyer or f"buyer{self.n}@example.com"),
            share_code=self.code if code else None,
            now=at,
        )

    def refund(self, purchase, amount):
        return refund_purchase(
            self.session, storefront_id=self.shop, purchase_id=purchase["id"], amount=amount
        )


@pytest.fixture
def world(build, session):
    return World(build, session)


def test_insights_explain_who_sold_what_from_recorded_sales_and_refunds(world, session):
    first = world.sell()
    second = world.sell(at=T0 + timedelta(days=2))
    world.sell(code=False, amount=500, at=T0 + timedelta(days=2))  # direct
    world.refund(first, 1000)
    f1, f2, f3, f4, f5, f6 = world.fans
    data = insights.artist_insights(session, world.artist, now=T0 + timedelta(days=3))

    # Six chain fans and three buyers; the two link buyers hang under F6.
    graph = data["graph"]
    assert (graph["fans"], graph["edges"], graph["depth"]) == (9, 7, 6)
    # Both link sales went up the same chain: one cascade, named by the larger (unrefunded)
    cascades = graph["largest_cascades"]
    assert cascades == [
        {"purchase_id": second["id"], "levels": 5, "fan_ids": [f6, f5, f4, f3, f2], "sales": 2}
    ]
    assert first["id"] != second["id"]
    top = data["top"]
    assert [r["fan_id"] for r in top["attributed_revenue"]] == [f6]
    assert top["attributed_revenue"][0]["attributed_revenue"] == 999 + 1999
    assert {r["fan_id"] for r in top["revenue_any_level"]} == {f2, f3, f4, f5, f6}
    # F6 earned 99 twice, less the 49 the refund took back.
    assert (top["rewards"][0]["fan_id"], top["rewards"][0]["rewards"]) == (f6, 99 * 2 - 49)
    assert top["pagerank"][0]["fan_id"] == f1
    assert top["downline"][0]["fan_id"] == f2 and top["downline"][0]["downline"] == [1, 1, 1, 1, 2]
    # F4 and F5 split the chain of eight most evenly: 4 x 3 pairs go through each.
    assert {r["fan_id"] for r in top["betweenness"][:2]} == {f4, f5}
    assert top["betweenness"][0]["betweenness"] == f"{12 * 2 / (8 * 7):.6f}"
    assert data["roi"] == {
        "from": None,
        "to": None,
        "attributed_revenue": 999 + 1999,
        "direct_revenue": 500,
        "rewards": 170 * 2 - 83,
        "attributed_sales": 2,
        "direct_sales": 1,
        "reward_cost_per_attributed_sale": (170 * 2 - 83) // 2,
        "return_bps": (2998 - 257) * 10000 // 257,
        "currencies": ["USD"],
    }
    assert data["series"] == [
        {"date": "2026-05-01", "sales": 1, "revenue": 999, "rewards": 170 - 83},
        {"date": "2026-05-02", "sales": 0, "revenue": 0, "rewards": 0},
        {"date": "2026-05-03", "sales": 2, "revenue": 2499, "rewards": 170},
    ]
    assert {n["id"] for n in data["picture"]["nodes"]} >= set(world.fans)
    assert data["computed_at"] == (T0 + timedelta(days=3)).isoformat()


def test_insights_are_cached_until_a_sale_a_refund_age_or_force_makes_them_stale(world, session):
    sale = world.sell()
    first = insights.artist_insights(session, world.artist, now=T0)
    assert session.get(InsightsCache, world.artist).purchase_count == 1
    session.rollback()
    again = insights.artist_insights(session, world.artist, now=T0 + timedelta(minutes=5))
    assert again == first

    world.sell(at=T0)
    after_sale = insights.artist_insights(session, world.artist, now=T0 + timedelta(minutes=6))
    assert after_sale["computed_at"] != first["computed_at"]
    assert after_sale["roi"]["attributed_sales"] == 2

    world.refund(sale, 1999)
    after_refund = insights.artist_insights(session, world.artist, now=T0 + timedelta(minutes=7))
    assert after_refund["roi"]["attributed_sales"] == 1

    later = T0 + timedelta(minutes=7, seconds=1)
    assert insights.artist_insights(session, world.artist, now=later) == after_refund
    old = T0 + timedelta(minutes=18)
    assert (
        insights.artist_insights(session, world.artist, now=old)["computed_at"] == old.isoformat()
    )
    forced = insights.artist_insights(
        session, world.artist, now=old + timedelta(seconds=1), force=True
    )
    assert forced["computed_at"] == (old + timedelta(seconds=1)).isoformat()
    assert "_source" not in forced


def test_insights_of_an_unknown_artist_are_not_found_and_an_artist_without_sales_is_empty(
    build, session
):
    with pytest.raises(NotFound):
        insights.artist_insights(session, "art_doesnotexist")
    empty = insights.artist_insights(session, build.artist())
    assert empty["graph"] == {"fans": 0, "edges": 0, "depth": 0, "largest_cascades": []}
    assert empty["series"] == [] and empty["picture"] == {"nodes": [], "edges": []}
    assert empty["roi"]["return_bps"] is None


def test_a_reward_rejected_in_review_costs_nothing_in_the_figures(world, session):
    sale = world.sell()
    rejected = update(Reward).where(Reward.purchase_id == sale["id"], Reward.level == 1)
    session.execute(rejected.values(review_state="rejected"))
    session.commit()
    data = insights.artist_insights(session, world.artist)
    assert data["roi"]["rewards"] == 170 - 99
    assert world.fans[-1] not in [r["fan_id"] for r in data["top"]["rewards"]]
    assert insights.simulate(session, world.artist, [500])["actual_rewards"] == 170 - 99


def test_program_return_over_a_period_counts_the_sales_recorded_in_it(world, session):
    world.sell(at=T0)
    world.sell(at=T0 + timedelta(days=1))
    world.sell(code=False, amount=1000, at=T0 + timedelta(days=1))
    roi = insights.program_return(
        session, world.artist, start=T0 + timedelta(hours=1), end=T0 + timedelta(days=2)
    )
    assert (roi["attributed_sales"], roi["direct_sales"], roi["rewards"]) == (1, 1, 170)
    assert roi["return_bps"] == (1999 - 170) * 10000 // 170
    naive = insights.program_return(session, world.artist, end=datetime(2026, 5, 1, 10))
    assert naive["attributed_sales"] == 0 and naive["to"] == T0.isoformat()
    with pytest.raises(ValidationFailed):
        insights.program_return(session, world.artist, start=T0, end=T0 - timedelta(days=1))


def test_the_simulator_replays_stored_chains_and_never_touches_the_ledger(world, session):
    world.sell()
    world.sell(code=False)
    before = row_counts(session)
    result = insights.simulate(session, world.artist, [1000, 500])
    assert row_counts(session) == before
    assert result["sales"] == 2 and result["total_rewards"] == 298
    assert result["actual_rewards"] == 170 and result["difference"] == 128
    with pytest.raises(PlanError):
        insights.simulate(session, world.artist, [3000, 3000])
    with pytest.raises(NotFound):
        insights.simulate(session, "art_doesnotexist", [100])


def test_a_fans_lifetime_value_adds_its_own_purchases_to_what_it_brought_in(world, session):
    world.sell()  # F2..F6 brought this in
    world.sell(amount=1500)
    partial = world.sell(amount=1000)
    world.refund(partial, 400)
    f1, f2, *_, f6 = world.fans
    record_purchase(
        session,
        storefront_id=world.shop,
        content_id=world.item.id,
        amount=700,
        currency="USD",
        buyer=BuyerRef(fan_id=f6),
    )  # F6 buys, attributed to F5..F1: F6 holds no position in its own chain
    assert insights.fan_lifetime_value(session, f6) == 1999 + 1500 + 600 + 700
    assert insights.fan_lifetime_value(session, f2) == 1999 + 1500 + 600 + 700
    assert insights.fan_lifetime_value(session, f1) == 700
    with pytest.raises(NotFound):
        insights.fan_lifetime_value(session, "fan_doesnotexist")


def test_program_return_and_the_simulator_sum_in_sql_what_the_sales_sum_to(world, session, build):
    """The services add up in SQL what insights.program_return and simulate_plan add up
    over the sales: the same answers for any period, with refunds (part and whole), a
    rejected reward, direct sales, a fan buying through its own upline, and an artist
    with no sales."""
    first = world.sell(at=T0)
    whole = world.sell(at=T0 + timedelta(hours=5))
    world.sell(code=False, amount=700, at=T0 + timedelta(days=1))
    gone = world.sell(code=False, amount=300, at=T0 + timedelta(days=2))
    record_purchase(  # F6 buys: attributed to its upline, F6 holds no position in it
        session,
        storefront_id=world.shop,
        content_id=world.item.id,
        amount=800,
        currency="USD",
        buyer=BuyerRef(fan_id=world.fans[-1]),
        now=T0 + timedelta(days=3),
    )
    world.refund(first, 1000)
    world.refund(whole, 1999)
    world.refund(gone, 300)
    rejected = update(Reward).where(Reward.purchase_id == first["id"], Reward.level == 2)
    session.execute(rejected.values(review_state="rejected"))
    session.commit()
    moments = [None, T0, T0 + timedelta(hours=5), T0 + timedelta(days=1), T0 + timedelta(days=9)]
    for start in moments:
        for end in moments:
            if start is not None and end is not None and start > end:
                continue
            summed = insights.program_return(session, world.artist, start=start, end=end)
            sales = insights._load_sales(session, world.artist, start=start, end=end)
            session.rollback()
            assert summed == analytics.program_return(sales, start=start, end=end), (start, end)
    # The simulator reads only chains and sums what was booked in SQL: the same answer.
    sales = insights._load_sales(session, world.artist)
    session.rollback()
    for plan in ([1000, 500], [500] * 5, [2000]):
        assert insights.simulate(session, world.artist, plan) == analytics.simulate_plan(
            sales, plan
        )
    everything = insights.program_return(session, world.artist)
    assert (everything["attributed_sales"], everything["direct_sales"]) == (2, 1)
    assert everything["currencies"] == ["USD"]
    nothing = insights.program_return(session, build.artist("Nobody"))
    assert (nothing["rewards"], nothing["return_bps"], nothing["currencies"]) == (0, None, [])


def test_the_database_adds_up_the_sales_as_summarise_adds_them_up(world, session, build):
    """Forced insights read the sales added up by the database, never sale by sale:
    the same summary (chains, buyers, days, currencies) as ``insights.summarise`` over
    every sale read back, and the same figures as analysing those sales. The sales
    cover refunds (part and whole), a rejected reward, direct sales, two currencies,
    several days, a fan buying through its own downline (it holds a position in its
    chain), and ties on net and time that only the purchase id breaks."""
    f = world.fans
    euro = build.content(world.artist, price=500, currency="EUR")
    first = world.sell(at=T0)
    whole = world.sell(at=T0 + timedelta(hours=5))
    world.sell(at=T0 + timedelta(hours=5))  # the same net and time as `whole`'s sibling
    world.sell(at=T0 + timedelta(hours=5))
    world.sell(code=False, amount=700, at=T0 + timedelta(days=1))
    own = record_purchase(  # F2 buys through F6's link: F2 sits in its own chain
        session,
        storefront_id=world.shop,
        content_id=world.item.id,
        amount=1999,
        currency="USD",
        buyer=BuyerRef(fan_id=f[1]),
        share_code=world.code,
        now=T0 + timedelta(days=2),
    )
    record_purchase(  # F6 buys in euros, attributed to its upline
        session,
        storefront_id=world.shop,
        content_id=euro.id,
        amount=500,
        currency="EUR",
        buyer=BuyerRef(fan_id=f[-1]),
        now=T0 + timedelta(days=4),
    )
    world.refund(first, 1000)
    world.refund(whole, 1999)
    rejected = update(Reward).where(Reward.purchase_id == first["id"], Reward.level == 2)
    session.execute(rejected.values(review_state="rejected"))
    session.commit()

    summary = insights._load_summary(session, world.artist)
    sales = insights._load_sales(session, world.artist)
    session.rollback()
    assert f[1] in next(s.chain for s in sales if s.id == own["id"])
    expected = analytics.summarise(sales)
    assert Counter(summary.chains) == Counter(expected.chains)
    assert any(group.buyer == f[1] for group in summary.chains)
    assert (summary.spent, summary.days, summary.currencies) == (
        expected.spent,
        expected.days,
        expected.currencies,
    )
    assert len(summary.days) == 4 and summary.currencies == {"USD", "EUR"}

    data = insights.artist_insights(session, world.artist, force=True)
    sponsors, handles = insights._load_uplines(session, expected.fans)
    rewards_by_fan = insights._rewards_by_fan(session, world.artist)
    session.rollback()
    found = analytics.analyse(sales, sponsors, handles=handles, rewards_by_fan=rewards_by_fan)
    assert (data["graph"], data["top"], data["picture"]) == (
        found["graph"],
        found["top"],
        found["picture"],
    )
    assert data["roi"] == analytics.program_return(sales)
    assert data["series"] == analytics.daily_series(sales)
    # The link's chain carried five sales; its best: two at 1999 at one moment, the id.
    tied = [s for s in sales if s.created_at == T0 + timedelta(hours=5) and s.net == 1999]
    (cascade,) = [c for c in data["graph"]["largest_cascades"] if c["sales"] == 5]
    assert len(tied) == 2 and cascade["purchase_id"] == min(s.id for s in tied)
