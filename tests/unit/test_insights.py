"""Influence analytics as pure functions, on hand-made graphs and sales with known answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import networkx as nx
import pytest
from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

from royalties import insights
from royalties.errors import PlanError
from royalties.insights import Sale

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def sale(sale_id, chain, amount=1000, *, buyer="buyer", refunded=0, rewards=0, back=0, at=T0):
    return Sale(
        id=sale_id,
        buyer_id=buyer,
        amount=amount,
        chain=tuple(chain),
        created_at=at,
        refunded_amount=refunded,
        rewards=rewards,
        rewards_reversed=back,
        currency="USD",
    )


def random_forest(seed, n):
    rng = random.Random(seed)
    return {
        f"f{i}": (f"f{rng.randrange(i)}" if i and rng.random() < 0.85 else None) for i in range(n)
    }


# -- the graph ----------------------------------------------------------------------------


def test_downline_counts_per_level_on_a_small_tree_stop_at_five_levels():
    sponsor_of = {
        "r": None,
        "a": "r",
        "b": "r",
        "c": "a",
        "d": "a",
        "e": "c",
        "f": "e",
        "g": "f",
        "h": "g",  # six levels below r: not r's downline any more
    }
    counts = insights.downline_by_level(insights.referral_graph(sponsor_of))
    assert counts["r"] == [2, 2, 1, 1, 1]
    assert counts["a"] == [2, 1, 1, 1, 1]
    assert counts["b"] == [0, 0, 0, 0, 0]
    assert counts["g"] == [1, 0, 0, 0, 0]
    assert insights.depths(insights.referral_graph(sponsor_of))["h"] == 6


@pytest.mark.parametrize("seed", range(6))
def test_downline_per_level_equals_networkx_distances_on_random_forests_and_a_loop(seed):
    sponsor_of = random_forest(seed, 300)
    if seed % 2:  # a loop of sponsor links: the fallback walk, off the forest
        sponsor_of |= {"x": "y", "y": "z", "z": "x", "w": "x"}
    graph = insights.referral_graph(sponsor_of)
    links = insights.Links.of(sponsor_of)
    forest = links.forest()
    assert (forest is None) == bool(seed % 2)
    counts = (
        insights.downline_by_level(links.nodes, forest=forest)
        if forest is not None
        else insights.downline_by_level(graph)
    )
    for fan in graph:
        at = nx.single_source_shortest_path_length(graph, fan, cutoff=5)
        expected = [sum(1 for d in at.values() if d == level) for level in range(1, 6)]
        if seed % 2 and fan in "xyzw":
            continue  # on a loop "below" has no meaning; the walk stops going round
        assert counts[fan] == expected, fan


def test_the_fan_joining_two_big_groups_to_its_own_upline_has_the_highest_betweenness():
    sponsor_of: dict[str, str | None] = {"root": None, "broker": "root", "h1": "broker"}
    sponsor_of["h2"] = "broker"
    for i in range(5):
        sponsor_of[f"r{i}"] = "root"
        sponsor_of[f"x{i}"] = "h1"
        sponsor_of[f"y{i}"] = "h2"
    scores = insights.betweenness(insights.referral_graph(sponsor_of), normalized=False)
    # Without the broker, three groups of six fans are apart: 6*6*3 pairs go through it.
    assert scores["broker"] == 108
    assert scores["root"] == scores["h1"] == 5 * 4 / 2 + 5 * 13 == 75
    assert max(scores, key=scores.__getitem__) == "broker"
    assert scores["x0"] == 0


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("normalized", [True, False])
def test_the_linear_forest_betweenness_equals_networkx_on_random_small_forests(seed, normalized):
    graph = insights.referral_graph(random_forest(seed, 3 + seed * 3))
    expected = nx.betweenness_centrality(graph.to_undirected(), normalized=normalized)
    assert insights.betweenness(graph, normalized=normalized) == pytest.approx(expected)
    undirected = insights.betweenness(graph.to_undirected(), normalized=normalized)
    assert undirected == pytest.approx(expected)


def test_betweenness_falls_back_to_networkx_when_the_graph_has_a_loop():
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    expected = nx.betweenness_centrality(graph.to_undirected(), normalized=True)
    assert insights.betweenness(graph) == pytest.approx(expected)


def test_pagerank_ranks_a_star_center_first_and_a_chain_from_the_top_down():
    star = insights.influence_rank(insights.referral_graph({f"l{i}": "hub" for i in range(4)}))
    assert max(star, key=star.__getitem__) == "hub"
    assert len({round(star[f"l{i}"], 12) for i in range(4)}) == 1
    chain = insights.influence_rank(
        insights.referral_graph({"a": None, "b": "a", "c": "b", "d": "c"})
    )
    assert sorted(chain, key=chain.__getitem__, reverse=True) == ["a", "b", "c", "d"]
    assert sum(chain.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(8))
def test_the_exact_forest_pagerank_equals_networkx_iterating_on_fan_to_sponsor_edges(seed):
    graph = insights.referral_graph(random_forest(seed, 2 + seed * 5))
    expected = _pagerank_python(graph.reverse(), tol=1e-15, max_iter=10_000)
    assert insights.influence_rank(graph) == pytest.approx(expected, abs=1e-10)


def test_the_exact_forest_pagerank_equals_nx_pagerank_when_scipy_is_there():
    pytest.importorskip("scipy")
    graph = insights.referral_graph(random_forest(3, 40))
    expected = nx.pagerank(graph.reverse(), tol=1e-12)
    assert insights.influence_rank(graph) == pytest.approx(expected, abs=1e-8)


def test_pagerank_falls_back_to_networkx_on_a_loop():
    graph = nx.DiGraph([("a", "b"), ("b", "a"), ("b", "c")])
    expected = _pagerank_python(graph.reverse())
    assert insights.influence_rank(graph) == pytest.approx(expected, abs=1e-6)


def test_the_largest_cascades_are_the_deepest_chains_then_the_larger_then_the_earlier():
    sales = [
        sale("p1", ["a"], 5000),
        sale("p2", ["a", "b", "c"], 1000),
        sale("p3", ["d", "e", "f"], 3000),
        sale("p4", ["a", "b", "c", "g"], 10),
        sale("p5", ["h", "i", "j"], 3000, at=T0 - timedelta(days=1)),
        sale("p6", [], 90000),
    ]
    found = insights.largest_cascades(sales, 4)
    assert [(c["purchase_id"], c["levels"]) for c in found] == [
        ("p4", 4),
        ("p5", 3),
        ("p3", 3),
        ("p2", 3),
    ]
    assert found[0]["fan_ids"] == ["a", "b", "c", "g"]


def test_a_chain_that_carried_several_sales_is_one_cascade_named_by_its_largest_sale():
    sales = [
        sale("p1", ["a", "b", "c"], 1000),
        sale("p2", ["a", "b", "c"], 3000),
        sale("p3", ["a", "b", "c"], 3000, at=T0 + timedelta(days=1)),
        sale("p4", ["d", "b", "c"], 500),
        sale("p5", ["a", "b"], 9000),
    ]
    found = insights.largest_cascades(sales, 10)
    assert [(c["purchase_id"], c["fan_ids"], c["sales"]) for c in found] == [
        ("p2", ["a", "b", "c"], 3),
        ("p4", ["d", "b", "c"], 1),
        ("p5", ["a", "b"], 1),
    ]
    assert len({tuple(c["fan_ids"]) for c in found}) == len(found)


# -- money --------------------------------------------------------------------------------


def worked_example():
    """Three attributed sales (one refunded in part) and two direct ones.

    p1 10000 via [a, b] at [500, 200] bps: 500 + 200 rewards
    p2  2000 via [a] at [500]: 100
    p3  5000 via [b, c]: 250 + 100; 1000 refunded reverses floor(250/5) + floor(100/5) = 70
    d1 3000 and d2 1500 direct
    """
    return [
        sale("p1", ["a", "b"], 10000, rewards=700),
        sale("p2", ["a"], 2000, rewards=100, at=T0 + timedelta(days=1)),
        sale("p3", ["b", "c"], 5000, refunded=1000, rewards=350, back=70),
        sale("d1", [], 3000, at=T0 + timedelta(days=2)),
        sale("d2", [], 1500),
    ]


def test_program_return_on_a_worked_example_to_the_cent():
    roi = insights.program_return(worked_example())
    assert roi == {
        "from": None,
        "to": None,
        "attributed_revenue": 10000 + 2000 + 4000,
        "direct_revenue": 4500,
        "rewards": 700 + 100 + 280,
        "attributed_sales": 3,
        "direct_sales": 2,
        "reward_cost_per_attributed_sale": 360,  # floor(1080 / 3)
        "return_bps": 138148,  # floor((16000 - 1080) * 10000 / 1080) = floor(138148.14..)
        "currencies": ["USD"],
    }


def test_program_return_counts_only_the_period_and_no_rewards_means_no_return():
    start, end = T0 + timedelta(hours=1), T0 + timedelta(days=2)
    roi = insights.program_return(worked_example(), start=start, end=end)
    assert roi["from"] == start.isoformat() and roi["to"] == end.isoformat()
    assert (roi["attributed_revenue"], roi["attributed_sales"], roi["rewards"]) == (2000, 1, 100)
    assert roi["direct_sales"] == 0 and roi["return_bps"] == 190000
    direct = insights.program_return([sale("d", [], 500)])
    assert direct["return_bps"] is None and direct["reward_cost_per_attributed_sale"] is None


def test_a_sale_refunded_in_full_is_no_sale_and_a_loss_is_a_negative_return():
    sales = [sale("p", ["a"], 1000, refunded=1000, rewards=50, back=50), sale("q", ["a"], 100)]
    roi = insights.program_return([*sales, sale("r", ["a"], 100, rewards=150)])
    assert roi["attributed_sales"] == 2 and roi["attributed_revenue"] == 200
    assert roi["return_bps"] == (200 - 150) * 10000 // 150
    loss = insights.program_return([sale("r", ["a"], 100, rewards=300)])
    assert loss["return_bps"] == -6667  # floor(-6666.67): floors toward minus infinity
    floored = insights.program_return([sale("s", ["a"], 12, rewards=7), sale("t", ["b"], 9)])
    assert floored["return_bps"] == 20000  # (21 - 7) * 10000 / 7, exactly
    floored = insights.program_return([sale("s", ["a"], 12, rewards=7)])
    assert floored["return_bps"] == 7142  # 7142.857..: floored, not rounded
    assert floored["reward_cost_per_attributed_sale"] == 7


def test_revenue_per_fan_counts_level_one_any_level_and_own_spending_but_not_own_positions():
    sales = [
        *worked_example(),
        sale("own", ["x", "a"], 700, buyer="a"),  # a sits in its own purchase's chain
    ]
    money = insights.revenue_by_fan(sales)
    assert money.level1 == {"a": 12000, "b": 4000, "x": 700}
    assert money.any_level == {"a": 12000, "b": 14000, "c": 4000, "x": 700}
    assert money.spent["a"] == 700 and money.spent["buyer"] == 20500
    assert insights.lifetime_value(sales, "a") == 12700


@pytest.mark.parametrize("seed", range(5))
def test_revenue_per_fan_summed_per_shared_chain_equals_crediting_each_sale(seed):
    """Sales share chain tuples (as the readers hand them out), some chains are equal
    but other tuples, some buyers sit in their own chain: the figures are those of
    crediting every sale up its chain one by one."""
    rng = random.Random(seed)
    fans = [f"f{i}" for i in range(12)]
    pool = [tuple(rng.sample(fans, rng.randint(1, 5))) for _ in range(15)]
    sales = []
    for n in range(400):
        chain = rng.choice([*pool, ()])
        if rng.random() < 0.2:
            chain = tuple(list(chain))  # equal, not the same tuple
        buyer = rng.choice([*fans, "b1", "b2", "b3"])
        amount = rng.randint(1, 5000)
        sales.append(sale(f"s{n}", chain, amount, buyer=buyer, refunded=rng.randint(0, amount)))
    level1, any_level, spent = {}, {}, {}
    for one in sales:
        net = one.amount - one.refunded_amount
        spent[one.buyer_id] = spent.get(one.buyer_id, 0) + net
        for place, fan in enumerate(one.chain):
            if fan == one.buyer_id:
                continue
            any_level[fan] = any_level.get(fan, 0) + net
            if place == 0:
                level1[fan] = level1.get(fan, 0) + net
    money = insights.revenue_by_fan(sales)
    assert (money.level1, money.any_level, money.spent) == (level1, any_level, spent)
    assert any(one.buyer_id in one.chain for one in sales)


@pytest.mark.parametrize("seed", range(5))
def test_the_largest_cascades_of_shared_and_equal_chain_tuples_are_those_sale_by_sale(seed):
    """Chains shared as one tuple and equal chains in other tuples: each chain once,
    named by the sale ranking first, as when every sale is ranked on its own."""
    rng = random.Random(seed)
    fans = [f"f{i}" for i in range(10)]
    pool = [tuple(rng.sample(fans, rng.randint(1, 5))) for _ in range(25)]
    sales = []
    for n in range(300):
        chain = rng.choice(pool)
        if rng.random() < 0.3:
            chain = tuple(list(chain))
        amount = rng.choice([500, 1000, 2000])
        at = T0 + timedelta(minutes=rng.randrange(50))
        sales.append(sale(f"s{n:03}", chain, amount, refunded=rng.choice([0, 100]), at=at))

    def rank(one):
        return (-len(one.chain), one.refunded_amount - one.amount, one.created_at, one.id)

    best, carried = {}, {}
    for one in sales:
        carried[one.chain] = carried.get(one.chain, 0) + 1
        if one.chain not in best or rank(one) < rank(best[one.chain]):
            best[one.chain] = one
    expected = [
        {
            "purchase_id": one.id,
            "levels": len(one.chain),
            "fan_ids": list(one.chain),
            "sales": carried[one.chain],
        }
        for one in sorted(best.values(), key=rank)[:10]
    ]
    assert insights.largest_cascades(sales, 10) == expected


def test_the_daily_series_is_ascending_fills_quiet_days_and_narrows_to_a_period():
    series = insights.daily_series(worked_example())
    assert series == [
        {"date": "2026-03-01", "sales": 3, "revenue": 15500, "rewards": 980},
        {"date": "2026-03-02", "sales": 1, "revenue": 2000, "rewards": 100},
        {"date": "2026-03-03", "sales": 1, "revenue": 3000, "rewards": 0},
    ]
    within = insights.series_within(series, T0 + timedelta(hours=13), T0 + timedelta(days=1))
    assert [p["date"] for p in within] == ["2026-03-02"]
    gap = insights.daily_series([sale("a", [], 1), sale("b", [], 1, at=T0 + timedelta(days=3))])
    assert [p["sales"] for p in gap] == [1, 0, 0, 1]


def test_the_simulator_on_the_spec_9_sale_pays_199_and_99_against_170_actually_paid():
    spec9 = sale("p", ["F6", "F5", "F4", "F3", "F2"], 1999, buyer="B", rewards=170)
    result = insights.simulate_plan([spec9], [1000, 500])
    assert result == {
        "level_rates_bps": [1000, 500],
        "sales": 1,
        "per_level": [
            {"level": 1, "amount": 199, "count": 1},
            {"level": 2, "amount": 99, "count": 1},
        ],
        "total_rewards": 298,
        "actual_rewards": 170,
        "difference": 128,
        "currencies": ["USD"],
    }


def test_the_simulator_pays_no_buyer_position_and_refuses_an_invalid_plan():
    own = sale("p", ["F1", "B", "F3"], 10000, buyer="B", refunded=4000, rewards=200, back=80)
    result = insights.simulate_plan([own], [100, 100, 100, 100, 100])
    assert [level["amount"] for level in result["per_level"]] == [100, 0, 100, 0, 0]
    assert [level["count"] for level in result["per_level"]] == [1, 0, 1, 0, 0]
    assert result["actual_rewards"] == 200  # gross, as the simulation is
    for bad in ([], [5001], [-1], [100] * 6, [True]):
        with pytest.raises(PlanError) as info:
            insights.simulate_plan([own], bad)
        assert "level_rates_bps" in info.value.fields


# -- all together -------------------------------------------------------------------------


def test_analyse_ranks_the_fans_and_draws_a_bounded_picture():
    sponsor_of = random_forest(7, 400)
    fans = sorted(sponsor_of)
    rng = random.Random(7)
    sales = []
    for i in range(300):
        buyer = rng.choice(fans)
        chain, up = [], sponsor_of[buyer]
        while up and len(chain) < 5:
            chain.append(up)
            up = sponsor_of[up]
        sales.append(sale(f"p{i}", chain, rng.randint(100, 5000), buyer=buyer))
    rewards = {fan: len(fan) for fan in fans[::3]}
    found = insights.analyse(
        sales, sponsor_of, handles={f: f.upper() for f in fans}, rewards_by_fan=rewards, top=7
    )
    graph = found["graph"]
    assert graph["fans"] == 400 and graph["edges"] == 400 - sum(
        1 for s in sponsor_of.values() if s is None
    )
    assert len(graph["largest_cascades"]) == 10
    money = insights.revenue_by_fan(sales)
    best = max(money.level1.values())
    assert found["top"]["attributed_revenue"][0]["attributed_revenue"] == best
    assert found["top"]["rewards"][0]["rewards"] == 4  # the longest ids, first by id
    for key, rows in found["top"].items():
        assert 0 < len(rows) <= 7, key
        row = rows[0]
        assert row["handle"] == row["fan_id"].upper()
        assert len(row["pagerank"].split(".")[1]) == 6 and len(row["downline"]) == 5
        assert row["downline_total"] == sum(row["downline"])
    picture = found["picture"]
    ids = {node["id"] for node in picture["nodes"]}
    assert len(ids) == len(picture["nodes"]) <= 150
    assert all(0 <= n["x"] <= 1000 and 0 <= n["y"] <= 600 for n in picture["nodes"])
    assert all(
        src in ids and dst in ids and sponsor_of[dst] == src for src, dst in picture["edges"]
    )
    assert sum(n["broker"] for n in picture["nodes"]) == 5
    assert {row["fan_id"] for row in found["top"]["pagerank"]} <= ids
