"""Influence analytics over one artist's sales: batch work, never on the purchase path.

Pure functions over plain data (no session, no I/O); ``royalties.services.insights``
reads the rows, calls these and caches the result.

The graph
- ``referral_graph`` is an ``nx.DiGraph`` with an edge sponsor -> fan, over the fans
  involved in the sales (buyers, every fan of a stored chain) and their ancestors up to
  the roots. SPEC section 2 makes it a forest; every metric below is O(n) on a forest
  and falls back to networkx's general algorithm on anything else.
- Downline per level 1..5 counts descendants *within this graph* (fans who bought, or
  sat in a chain, of this artist), not a fan's whole downline; its total is the sum of
  those five levels.
- ``influence_rank`` is PageRank with the edges turned fan -> sponsor: a fan hands its
  score up to its sponsor, so sponsors of large, deep downlines rank high. On a forest
  each fan has at most one out-edge, the PageRank equations solve bottom-up
  (``x[v] ~ 1 + alpha * sum of x over v's children``, then normalised) and the result is
  exact; elsewhere ``nx.pagerank``. (``nx.pagerank`` itself needs scipy, which this
  project does not install; the tests check both against networkx's own iteration.)
- ``betweenness`` is undirected betweenness centrality: brokers join groups that would
  otherwise be apart. On a forest paths are unique, so a fan's score is the number of
  pairs left in different pieces of its tree without it, ``((m-1)^2 - sum of squared
  piece sizes) / 2`` for a tree of m fans: O(n) from subtree sizes, scaled as
  ``nx.betweenness_centrality(G.to_undirected(), normalized=...)`` scales.

The money (integer minor units only, SPEC section 4)
- Revenue is net of refunds, ``amount - refunded_amount``. A sale refunded in full
  keeps its (zero) revenue but is not counted as a sale.
- A sale is attributed when its stored chain is non-empty; chain[0] is its level-1 fan.
  A position held by the buyer brought nothing in and counts nowhere.
- Rewards are net of reversals, ``amount - reversed_amount``; a reward rejected in
  review counts as nothing (its money went back to the artist).
- ``return_bps = floor((attributed revenue - rewards) * 10000 / rewards)``, None without
  rewards; reward cost per attributed sale ``= floor(rewards / attributed sales)``.
- Figures are sums of minor units: an artist selling in several currencies gets them
  added up, and ``currencies`` says which were.
- The plan simulator replays each sale's stored chain and buyer through
  ``royalties.attribution.split_sale`` on the gross amount, against the gross rewards
  actually booked (refunds ignored on both sides). The stored chain is cut to the plan
  the sale was recorded under, so extra simulated levels find nobody to pay.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import zip_longest
from typing import Any, NamedTuple

import networkx as nx

from royalties.attribution import split_sale
from royalties.models.graph import MAX_DEPTH
from royalties.plans import DEFAULT_HOLD_DAYS, validate_plan

TOP_KEYS = (
    "attributed_revenue",
    "revenue_any_level",
    "rewards",
    "pagerank",
    "betweenness",
    "downline",
)
BROKERS = 5
PICTURE_WIDTH, PICTURE_HEIGHT = 1000, 600


class Sale(NamedTuple):
    """One recorded purchase as the analytics see it (a named tuple: a batch run holds
    millions, and a tuple is built three times faster than a frozen dataclass)."""

    id: str
    buyer_id: str
    amount: int
    chain: tuple[str, ...]
    created_at: datetime
    refunded_amount: int = 0
    rewards: int = 0  # booked on this sale, all levels (rejected rewards excluded)
    rewards_reversed: int = 0  # of which refunds took back
    currency: str = ""

    @property
    def net(self) -> int:
        return self.amount - self.refunded_amount

    @property
    def net_rewards(self) -> int:
        return self.rewards - self.rewards_reversed

    @property
    def counted(self) -> bool:
        """False for a sale refunded in full: it is no sale any more."""
        return self.refunded_amount < self.amount


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:  # what the reads give: nothing to convert
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _utc(moment).isoformat()


def _within(moment: datetime, start: datetime | None, end: datetime | None) -> bool:
    moment = _utc(moment)
    return (start is None or moment >= _utc(start)) and (end is None or moment < _utc(end))


# -- the sales added up ----------------------------------------------------------------

MAX_NET = 2**63 - 1  # a BIGINT's largest value: no sale's net is above it
CASCADE_KEY_ID = 19 + 26  # where the sale id starts in a cascade_key


def cascade_key(net: int, created_at: datetime, sale_id: str) -> str:
    """A string that sorts a chain's sales as ``largest_cascades`` ranks them: the largest
    net first, then the earliest, then by id. Fixed width up to the id (the net's
    complement in 19 digits, naive UTC with microseconds in 26 characters), so the
    database builds and compares the same strings (``royalties.services.insights``)."""
    naive = _utc(created_at).replace(tzinfo=None)
    return f"{MAX_NET - net:019d}{naive.isoformat(' ', 'microseconds')}{sale_id}"


class ChainSales(NamedTuple):
    """Attributed sales that share a stored chain, added up: all of its sales, or, when
    ``buyer`` is set, the sales of that buyer, who holds a position in the chain (a
    position that brought nothing in and is credited nothing)."""

    chain: tuple[str, ...]
    buyer: str | None
    net: int  # revenue net of refunds
    sales: int  # how many sales the chain carried, refunded ones included
    best: str  # cascade_key of its largest sale


@dataclass(frozen=True)
class Summary:
    """What the analytics need of an artist's sales, added up: per chain (a few
    hundred thousand groups for millions of sales at 1M fans), per buyer, per day.
    ``summarise`` adds up sales; the service has the database add them up the same."""

    chains: list[ChainSales]
    spent: dict[str, int]  # buyer -> net of its own purchases
    days: dict[date, Totals]  # per UTC day of recording
    currencies: set[str]

    @property
    def totals(self) -> Totals:
        return added(self.days.values())

    @property
    def fans(self) -> set[str]:
        """Every fan involved: every buyer and every fan of a stored chain."""
        fans = set(self.spent)
        for group in self.chains:
            fans.update(group.chain)
        return fans


def summary_of(sales: Iterable[Sale] | Summary) -> Summary:
    """``sales`` as a ``Summary``: itself when it is one, else ``summarise(sales)``."""
    return sales if isinstance(sales, Summary) else summarise(sales)


def summarise(sales: Iterable[Sale]) -> Summary:
    """The ``Summary`` of ``sales``."""
    groups: dict[tuple[tuple[str, ...], str | None], list[Any]] = {}
    spent: dict[str, int] = {}
    days: dict[date, list[int]] = {}
    currencies: set[str] = set()
    for sale in sales:
        net, kept, buyer = sale.net, sale.counted, sale.buyer_id
        spent[buyer] = spent.get(buyer, 0) + net
        currencies.add(sale.currency)
        day = days.setdefault(_utc(sale.created_at).date(), [0, 0, 0, 0, 0])  # as Totals
        day[2] += sale.net_rewards
        if not sale.chain:
            day[1] += net
            day[4] += kept
            continue
        day[0] += net
        day[3] += kept
        chain = tuple(sale.chain)
        best = cascade_key(net, sale.created_at, sale.id)
        key = (chain, buyer if buyer in chain else None)
        group = groups.get(key)
        if group is None:
            groups[key] = [net, 1, best]
        else:
            group[0] += net
            group[1] += 1
            group[2] = min(group[2], best)
    return Summary(
        [ChainSales(chain, buyer, *group) for (chain, buyer), group in groups.items()],
        spent,
        {day: Totals(*figures) for day, figures in sorted(days.items())},
        currencies,
    )


# -- the referral graph ---------------------------------------------------------------


def referral_graph(sponsor_of: Mapping[str, str | None], fans: Iterable[str] = ()) -> nx.DiGraph:
    """Edges sponsor -> fan for every fan in ``sponsor_of``; ``fans`` are added as nodes."""
    graph = nx.DiGraph()
    graph.add_nodes_from(sponsor_of)
    graph.add_nodes_from(set(fans).difference(sponsor_of))
    graph.add_edges_from((sponsor, fan) for fan, sponsor in sponsor_of.items() if sponsor)
    return graph


@dataclass(frozen=True)
class Links:
    """The graph ``referral_graph`` builds, as plain dicts: the same nodes in the same
    order, the same edges. A batch run walks these instead of a networkx graph (a
    quarter of its analysis time went into building one); the order matters, as the
    PageRank sums follow it to the last bit."""

    nodes: dict[str, None]  # an insertion-ordered set: referral_graph's node order
    sponsor: dict[str, str]  # fan -> sponsor, one entry per edge
    children: dict[str, list[str]]  # sponsor -> fans, in edge order

    @classmethod
    def of(cls, sponsor_of: Mapping[str, str | None], fans: Iterable[str] = ()) -> Links:
        nodes = dict.fromkeys(sponsor_of)
        nodes.update(dict.fromkeys(set(fans).difference(sponsor_of)))
        sponsor: dict[str, str] = {}
        children: dict[str, list[str]] = {}
        for fan, up in sponsor_of.items():
            if up:
                nodes.setdefault(up)  # a sponsor nobody listed joins last, as in networkx
                sponsor[fan] = up
                children.setdefault(up, []).append(fan)
        return cls(nodes, sponsor, children)

    def forest(self) -> Forest | None:
        """What ``Forest.of`` finds on the networkx graph: the roots in node order, the
        edges in ``nx.dfs_edges`` order (pre-order, fans in edge order); None when some
        fans sit on a loop of sponsor links."""
        children = self.children
        roots = [node for node in self.nodes if node not in self.sponsor]
        edges: list[tuple[str, str]] = []
        for root in roots:
            stack = [(root, fan) for fan in reversed(children.get(root, ()))]
            while stack:
                edge = stack.pop()
                edges.append(edge)
                below = children.get(edge[1])
                if below:
                    stack.extend([(edge[1], fan) for fan in reversed(below)])
        if len(edges) != len(self.nodes) - len(roots):
            return None
        return Forest(roots, edges)


@dataclass(frozen=True)
class Forest:
    """A sponsor -> fan forest walked once: its roots, and its edges in DFS order (a
    sponsor's edge always before its fans' edges)."""

    roots: list[str]
    edges: list[tuple[str, str]]

    @classmethod
    def of(cls, graph: nx.DiGraph) -> Forest | None:
        """The walk of ``graph``, or None when it is not a forest of sponsor links."""
        roots = []
        for node, degree in graph.in_degree():
            if degree > 1:
                return None
            if degree == 0:
                roots.append(node)
        edges = [edge for root in roots for edge in nx.dfs_edges(graph, root)]
        # In-degree <= 1 everywhere: a component without a root is a loop nobody reaches.
        if len(edges) != graph.number_of_nodes() - len(roots):
            return None
        return cls(roots, edges)


def depths(graph: nx.DiGraph, forest: Forest | None = None) -> dict[str, int]:
    """How many sponsor links each fan sits below its root (a root: 0).

    Here and below: given the ``forest`` of the graph, ``graph`` need only be a
    collection of its nodes (``Links.nodes``)."""
    forest = forest or Forest.of(graph)
    if forest is None:
        roots = [node for node, degree in graph.in_degree() if degree == 0]
        found = nx.multi_source_dijkstra_path_length(graph, roots) if roots else {}
        return {node: int(found.get(node, 0)) for node in graph}
    depth = dict.fromkeys(forest.roots, 0)
    for sponsor, fan in forest.edges:
        depth[fan] = depth[sponsor] + 1
    return depth


def downline_by_level(
    graph: nx.DiGraph, levels: int = MAX_DEPTH, forest: Forest | None = None
) -> dict[str, list[int]]:
    """For each fan, how many fans of the graph sit 1, 2, .. ``levels`` links below it."""
    forest = forest or Forest.of(graph)
    counts = {node: [0] * levels for node in graph}
    if forest is not None:
        # Bottom-up: the edges are in pre-order, so backwards every fan's own downline is
        # counted before its sponsor adds it one level lower (an edge each, not a walk
        # of five sponsors per fan).
        for sponsor, fan in reversed(forest.edges):
            above, below = counts[sponsor], counts[fan]
            above[0] += 1
            for level in range(1, levels):
                above[level] += below[level - 1]
        return counts
    sponsor_of = {fan: sponsor for sponsor, fan in graph.edges}
    for fan in graph:
        node = fan
        for level in range(levels):
            node = sponsor_of.get(node)
            if node is None or node == fan:  # a root; or, off the forest, a loop
                break
            counts[node][level] += 1
    return counts


def betweenness(
    graph: nx.Graph, *, normalized: bool = True, forest: Forest | None = None
) -> dict[str, float]:
    """Undirected betweenness centrality; O(n) on a forest, networkx's otherwise."""
    if forest is None and graph.is_directed():
        forest = Forest.of(graph)
    if forest is not None:
        edges = forest.edges
    else:
        undirected = nx.Graph(graph)
        edges = list(nx.dfs_edges(undirected))
        if len(edges) != undirected.number_of_edges():  # a cycle: paths are not unique
            return dict(nx.betweenness_centrality(undirected, normalized=normalized))
    size = dict.fromkeys(graph, 1)
    for parent, child in reversed(edges):
        size[parent] += size[child]
    tree = {node: node for node in graph}
    squares = dict.fromkeys(graph, 0)
    for parent, child in edges:
        tree[child] = tree[parent]
        squares[parent] += size[child] ** 2
    n = len(graph)
    scale = 2 / ((n - 1) * (n - 2)) if normalized and n > 2 else 1.0
    result = {}
    for node in graph:
        members = size[tree[node]]
        above = members - size[node]
        pairs = ((members - 1) ** 2 - squares[node] - above * above) // 2
        result[node] = pairs * scale
    return result


def influence_rank(
    graph: nx.DiGraph, *, alpha: float = 0.85, forest: Forest | None = None
) -> dict[str, float]:
    """PageRank of the sponsor -> fan graph with its edges turned fan -> sponsor."""
    if len(graph) == 0:
        return {}
    forest = forest or Forest.of(graph)
    if forest is None:
        return _nx_pagerank(graph.reverse(copy=False), alpha)
    score = dict.fromkeys(graph, 1.0)
    for sponsor, fan in reversed(forest.edges):
        score[sponsor] += alpha * score[fan]
    total = sum(score.values())
    return {node: value / total for node, value in score.items()}


def _nx_pagerank(graph: nx.DiGraph, alpha: float) -> dict[str, float]:
    try:
        return dict(nx.pagerank(graph, alpha=alpha))
    except ImportError:  # nx.pagerank needs scipy; networkx's plain iteration does not
        from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

        return dict(_pagerank_python(graph, alpha=alpha))


# -- money per fan and per period -----------------------------------------------------


@dataclass(frozen=True)
class Revenue:
    """Net revenue per fan: as level 1, at any level, and spent on its own purchases."""

    level1: dict[str, int]
    any_level: dict[str, int]
    spent: dict[str, int]

    def lifetime_value(self, fan_id: str) -> int:
        return self.spent.get(fan_id, 0) + self.any_level.get(fan_id, 0)


def revenue_by_fan(sales: Iterable[Sale] | Summary) -> Revenue:
    """Net revenue per fan, from the sales or from their ``Summary``."""
    summary = summary_of(sales)
    level1: dict[str, int] = {}
    any_level: dict[str, int] = {}
    # The hottest loop of a batch run: plain dicts, no properties. A group's sales share
    # a chain, so their revenue is credited up it once (sums of integers: the figures are
    # those of crediting sale by sale); a buyer holding a position in it is not credited.
    for chain, buyer, net, _sales, _best in summary.chains:
        first = chain[0]
        if first != buyer:
            level1[first] = level1.get(first, 0) + net
        for fan in chain:
            if fan != buyer:
                any_level[fan] = any_level.get(fan, 0) + net
    return Revenue(level1, any_level, summary.spent)


def lifetime_value(sales: Iterable[Sale], fan_id: str) -> int:
    """Net value of the fan's own purchases plus those it brought in at any level."""
    return revenue_by_fan(sales).lifetime_value(fan_id)


def program_return(
    sales: Iterable[Sale], *, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """Attributed vs direct revenue (net of refunds) and what the rewards cost, for the
    sales recorded in [start, end) (all of them when open)."""
    if start is not None or end is not None:
        sales = [sale for sale in sales if _within(sale.created_at, start, end)]
    summary = summarise(sales)
    return return_figures(summary.totals, summary.currencies, start=start, end=end)


class Totals(NamedTuple):
    """What ``program_return`` adds up over sales (revenue net of refunds, rewards net of
    reversals, sales not refunded in full), however they were added up."""

    attributed_revenue: int
    direct_revenue: int
    rewards: int
    attributed_sales: int
    direct_sales: int


def added(totals: Iterable[Totals]) -> Totals:
    """Several ``Totals`` (of days, say) as one."""
    sums = [0, 0, 0, 0, 0]
    for one in totals:
        for place, value in enumerate(one):
            sums[place] += value
    return Totals(*sums)


def return_figures(
    totals: Totals,
    currencies: Iterable[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """``program_return``'s answer from its totals: the one home of its formulas, for
    the sums made here and those the database makes (``royalties.services.insights``)."""
    rewards, attributed_sales = totals.rewards, totals.attributed_sales
    return {
        "from": _iso(start),
        "to": _iso(end),
        "attributed_revenue": totals.attributed_revenue,
        "direct_revenue": totals.direct_revenue,
        "rewards": rewards,
        "attributed_sales": attributed_sales,
        "direct_sales": totals.direct_sales,
        "reward_cost_per_attributed_sale": (
            rewards // attributed_sales if attributed_sales else None
        ),
        "return_bps": (
            (totals.attributed_revenue - rewards) * 10_000 // rewards if rewards else None
        ),
        "currencies": sorted(set(currencies) - {""}),
    }


def daily_series(sales: Iterable[Sale] | Summary) -> list[dict[str, Any]]:
    """Sales, net revenue and net rewards per UTC day, ascending, quiet days included."""
    days = summary_of(sales).days
    if not days:
        return []
    out = []
    day, last = min(days), max(days)
    quiet = Totals(0, 0, 0, 0, 0)
    while day <= last:
        totals = days.get(day, quiet)
        out.append(
            {
                "date": day.isoformat(),
                "sales": totals.attributed_sales + totals.direct_sales,
                "revenue": totals.attributed_revenue + totals.direct_revenue,
                "rewards": totals.rewards,
            }
        )
        day += timedelta(days=1)
    return out


def series_within(
    series: Iterable[Mapping[str, Any]], start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    """The days of a daily series that overlap [start, end)."""
    out = []
    for point in series:
        first = datetime.fromisoformat(point["date"]).replace(tzinfo=UTC)
        if (end is None or first < _utc(end)) and (
            start is None or first + timedelta(days=1) > _utc(start)
        ):
            out.append(dict(point))
    return out


def largest_cascades(sales: Iterable[Sale] | Summary, n: int = 10) -> list[dict[str, Any]]:
    """The deepest chains of fans, each chain once however many sales it carried.

    A chain is ranked by its deepest reach, then by its largest sale's net, then by that
    sale's age; ``purchase_id`` names that sale and ``sales`` counts every sale the
    chain carried (several buyers through one link give one cascade, not several)."""
    summary = summary_of(sales)
    # Equal chains in several groups (per buyer in its own chain; or stored as other
    # text) are one cascade: [sales carried, best sale's key].
    merged: dict[tuple[str, ...], list[Any]] = {}
    for chain, _buyer, _net, carried, best in summary.chains:
        found = merged.get(chain)
        if found is None:
            merged[chain] = [carried, best]
        else:
            found[0] += carried
            found[1] = min(found[1], best)
    ranked = heapq.nsmallest(n, merged.items(), key=lambda item: (-len(item[0]), item[1][1]))
    return [
        {
            "purchase_id": best[CASCADE_KEY_ID:],
            "levels": len(chain),
            "fan_ids": list(chain),
            "sales": carried,
        }
        for chain, (carried, best) in ranked
    ]


def simulate_plan(
    sales: Iterable[Sale], level_rates_bps: Sequence[object], *, actual_rewards: int | None = None
) -> dict[str, Any]:
    """What another plan would have paid on these sales, per level, gross of refunds,
    against what was booked on them: ``actual_rewards`` when given (summed by the
    database: the sales' reward fields are not read), else their ``rewards`` summed.

    Raises PlanError (naming ``level_rates_bps``) for a plan SPEC section 4 refuses."""
    rates, _ = validate_plan(level_rates_bps, DEFAULT_HOLD_DAYS)
    amounts, counts = [0] * len(rates), [0] * len(rates)
    sold = actual = 0
    currencies: set[str] = set()
    # A split depends only on the amount and on which of the plan's positions are
    # filled by someone other than the buyer: split one sale of each such shape, and
    # count it as many times as it occurs (a few hundred shapes for millions of sales).
    shapes: dict[tuple[int, tuple[bool, ...]], list[Any]] = {}
    levels = len(rates)
    for sale in sales:
        sold += 1
        actual += sale.rewards
        currencies.add(sale.currency)
        buyer = sale.buyer_id
        key = (sale.amount, tuple([fan != buyer for fan in sale.chain[:levels]]))
        shape = shapes.get(key)
        if shape is None:
            shapes[key] = [sale, 1]
        else:
            shape[1] += 1
    currencies.discard("")
    if actual_rewards is not None:
        actual = actual_rewards
    for sale, times in shapes.values():
        for line in split_sale(sale.amount, rates, sale.chain, sale.buyer_id).rewards:
            amounts[line.level - 1] += line.amount * times
            counts[line.level - 1] += times
    total = sum(amounts)
    return {
        "level_rates_bps": rates,
        "sales": sold,
        "per_level": [
            {"level": level, "amount": amount, "count": count}
            for level, (amount, count) in enumerate(zip(amounts, counts, strict=True), start=1)
        ],
        "total_rewards": total,
        "actual_rewards": actual,
        "difference": total - actual,
        "currencies": sorted(currencies),
    }


# -- everything together ----------------------------------------------------------------


def _top(values: Mapping[str, float], n: int) -> list[str]:
    """The ``n`` keys of highest positive value, ties by key."""
    best = heapq.nsmallest(n, ((-value, key) for key, value in values.items() if value > 0))
    return [key for _, key in best]


def analyse(
    sales: Sequence[Sale] | Summary,
    sponsor_of: Mapping[str, str | None],
    *,
    handles: Mapping[str, str] | None = None,
    rewards_by_fan: Mapping[str, int] | None = None,
    top: int = 20,
    cascades: int = 10,
    picture_limit: int = 150,
) -> dict[str, Any]:
    """The graph summary, the top fans by each measure, and a picture of the network.

    ``sponsor_of`` must hold every involved fan and its ancestors up to the roots;
    ``rewards_by_fan`` is each fan's net rewards from this artist's sales.
    """
    handles = handles or {}
    summary = summary_of(sales)
    fans = summary.fans
    links = Links.of(sponsor_of, fans)
    forest = links.forest()
    # On a forest the measures need only the nodes; on anything else, networkx.
    graph = links.nodes if forest is not None else referral_graph(sponsor_of, fans)
    rewards_by_fan = {f: v for f, v in (rewards_by_fan or {}).items() if f in links.nodes}
    depth = depths(graph, forest)
    downline = downline_by_level(graph, forest=forest)
    rank = influence_rank(graph, forest=forest)
    between = betweenness(graph, forest=forest)
    money = revenue_by_fan(summary)

    measures: dict[str, Mapping[str, float]] = {
        "attributed_revenue": money.level1,
        "revenue_any_level": money.any_level,
        "rewards": rewards_by_fan,
        "pagerank": rank,
        "betweenness": between,
        "downline": {fan: sum(counts) for fan, counts in downline.items()},
    }

    def row(fan: str) -> dict[str, Any]:
        return {
            "fan_id": fan,
            "handle": handles.get(fan, ""),
            "attributed_revenue": money.level1.get(fan, 0),
            "revenue_any_level": money.any_level.get(fan, 0),
            "rewards": rewards_by_fan.get(fan, 0),
            "pagerank": f"{rank[fan]:.6f}",
            "betweenness": f"{between[fan]:.6f}",
            "downline": list(downline[fan]),
            "downline_total": sum(downline[fan]),
            "lifetime_value": money.lifetime_value(fan),
        }

    ranked = {key: _top(measures[key], top) for key in TOP_KEYS}
    brokers = _top(between, BROKERS)
    # Round-robin over the lists, so every measure gets its best fans into the picture.
    seeds = [fan for place in zip_longest(*ranked.values()) for fan in place if fan]
    return {
        "graph": {
            "fans": len(links.nodes),
            "edges": len(links.sponsor),
            "depth": max(depth.values(), default=0),
            "largest_cascades": largest_cascades(summary, cascades),
        },
        "top": {key: [row(fan) for fan in ids] for key, ids in ranked.items()},
        "picture": picture(
            links,
            depth,
            seeds=[*brokers, *seeds],
            brokers=set(brokers),
            handles=handles,
            limit=picture_limit,
        ),
    }


def picture(
    links: Links,
    depth: Mapping[str, int],
    *,
    seeds: Sequence[str],
    brokers: set[str],
    handles: Mapping[str, str],
    limit: int = 150,
) -> dict[str, Any]:
    """A layered tree drawing of at most ``limit`` fans: the seeds with their uplines,
    then their downlines; y by depth, x so that every subtree has its own span."""
    picked: dict[str, None] = {}  # insertion-ordered set
    for seed in seeds:
        node: str | None = seed
        while node is not None and node not in picked and len(picked) < limit:
            picked[node] = None
            node = links.sponsor.get(node)
    queue = list(picked)
    for node in queue:
        below = links.children.get(node, ())
        for child in sorted(below, key=lambda c: (-len(links.children.get(c, ())), c)):
            if len(picked) >= limit:
                break
            if child not in picked:
                picked[child] = None
                queue.append(child)

    def sponsor(node: str) -> str | None:
        up = links.sponsor.get(node)
        return up if up in picked else None

    children: dict[str, list[str]] = {node: [] for node in picked}
    roots = []
    for node in picked:
        up = sponsor(node)
        if up is None:
            roots.append(node)
        else:
            children[up].append(node)
    slot: dict[str, float] = {}
    leaves = 0
    stack: list[tuple[str, bool]] = [(root, False) for root in reversed(roots)]
    while stack:  # post-order: a sponsor sits above the middle of its fans
        node, done = stack.pop()
        kids = sorted(children[node])
        if not kids:
            slot[node] = leaves
            leaves += 1
        elif done:
            slot[node] = (slot[kids[0]] + slot[kids[-1]]) / 2
        else:
            stack.append((node, True))
            stack.extend((kid, False) for kid in reversed(kids))
    low = min((depth[node] for node in picked), default=0)
    high = max((depth[node] for node in picked), default=0)
    nodes = [
        {
            "id": node,
            "handle": handles.get(node, ""),
            "level": depth[node],
            "x": round((slot[node] + 0.5) * PICTURE_WIDTH / leaves),
            "y": (depth[node] - low) * PICTURE_HEIGHT // (high - low) if high > low else 0,
            "broker": node in brokers,
        }
        for node in picked
    ]
    nodes.sort(key=lambda n: (n["level"], n["x"], n["id"]))
    edges = sorted([up, node] for node in picked if (up := sponsor(node)) is not None)
    return {"nodes": nodes, "edges": edges}
