"""How long the artist insights take for one artist with 100,000 fans and 200,000 sales.

1. migrates a fresh database (a temp SQLite file, or with ``--postgres`` a throwaway
   PostgreSQL database on 127.0.0.1, dropped at the end);
2. in a child process (so its memory is not counted below), bulk-inserts one artist, a
   random forest of N fans (sponsor ids and root ids; no closure rows: insights read
   ``sponsor_id``) and S purchases with their stored chains and reward rows, split by
   the real ``royalties.attribution.split_sale`` under the default plan; a few percent
   are partly refunded, with the rewards' reversed parts prorated as SPEC 5 does. No
   ledger rows: insights never read the ledger;
3. times ``artist_insights(force=True)`` (reads + analytics + cache write), the same
   call served from the cache, ``program_return``, ``simulate`` and
   ``fan_lifetime_value``; then where the forced insights' time goes (each read, then
   the analysis); then runs them again in a fresh process for its peak RSS
   (ru_maxrss), and in another under tracemalloc for the peak of Python allocations.

Run: ``.venv/bin/python bench/insights.py [--fans 100000] [--sales 200000]
[--postgres] [--seed 1] [--reuse FILE]``. Figures are wall and CPU time of the measuring
process: on a busy machine the CPU time is the steadier one.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from royalties.attribution import reverse, split_sale
from royalties.db import database_url, make_engine, make_sessionmaker
from royalties.migrate import upgrade
from royalties.models import (
    Artist,
    Content,
    Fan,
    Purchase,
    Reward,
    RewardPlan,
    Storefront,
)
from royalties.plans import DEFAULT_RATES_BPS
from royalties.services import insights

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ARTIST, SHOP, ITEM = (
    "art_bench0000000000000000",
    "sf_bench00000000000000000",
    "cnt_bench0000000000000000",
)
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 20_000


def fan_id(i: int) -> str:
    return f"fan_{i:020d}"


def populate(url: str, fans: int, sales: int, seed: int) -> None:
    rng = random.Random(seed)
    engine = make_engine(url)
    rates = list(DEFAULT_RATES_BPS)
    # A random forest: half the fans join under a recent fan (deep cascades), the other
    # half under anyone; 2% start a tree of their own.
    sponsor: list[int | None] = [None]
    root = [0]
    for i in range(1, fans):
        if rng.random() < 0.02:
            parent = None
        elif rng.random() < 0.5:
            parent = rng.randrange(max(0, i - 30), i)
        else:
            parent = rng.randrange(i)
        sponsor.append(parent)
        root.append(i if parent is None else root[parent])

    def upline(i: int, n: int) -> list[int]:
        out = []
        node = sponsor[i]
        while node is not None and len(out) < n:
            out.append(node)
            node = sponsor[node]
        return out

    with engine.begin() as conn:
        conn.execute(insert(Artist), [{"id": ARTIST, "name": "Bench", "created_at": START}])
        conn.execute(
            insert(Storefront),
            [{"id": SHOP, "name": "Bench", "base_url": "https://x.test", "created_at": START}],
        )
        conn.execute(
            insert(Content),
            [
                {
                    "id": ITEM,
                    "artist_id": ARTIST,
                    "title": "Bench track",
                    "kind": "track",
                    "price": 1999,
                    "currency": "USD",
                    "storefront_url": "https://x.test/t",
                    "created_at": START,
                }
            ],
        )
        plan_id = conn.execute(
            insert(RewardPlan)
            .values(
                scope=f"artist:{ARTIST}",
                artist_id=ARTIST,
                version=1,
                level_rates_bps=rates,
                hold_days=30,
                created_at=START,
            )
            .returning(RewardPlan.id)
        ).scalar_one()
        rows = [
            {
                "id": fan_id(i),
                "handle": f"fan{i}",
                "sponsor_id": None if sponsor[i] is None else fan_id(sponsor[i]),
                "root_id": fan_id(root[i]),
                "payouts_enabled": False,
                "created_at": START,
            }
            for i in range(fans)
        ]
        for at in range(0, fans, BATCH):
            conn.execute(insert(Fan), rows[at : at + BATCH])

    purchases, rewards = [], []
    for n in range(sales):
        buyer = rng.randrange(fans)
        pick = rng.random()
        level1 = sponsor[buyer] if pick < 0.7 else rng.randrange(fans) if pick < 0.9 else None
        if level1 == buyer:
            level1 = sponsor[buyer]  # self-referral: level 1 falls back to the sponsor
        chain = [] if level1 is None else [level1, *upline(level1, len(rates) - 1)]
        amount = rng.choice((99, 499, 999, 1999, 4999))
        ids = [fan_id(f) for f in chain]
        split = split_sale(amount, rates, ids, fan_id(buyer))
        refunded = amount // 2 if rng.random() < 0.03 else 0
        back = (
            reverse({r.level: r.amount for r in split.rewards}, amount, 0, refunded).parts
            if refunded
            else {}
        )
        at = START + timedelta(seconds=rng.randrange(365 * 86400))
        pid = f"pur_{n:020d}"
        purchases.append(
            {
                "id": pid,
                "storefront_id": SHOP,
                "content_id": ITEM,
                "artist_id": ARTIST,
                "buyer_id": fan_id(buyer),
                "amount": amount,
                "currency": "USD",
                "artist_share": split.artist_share,
                "fee": 0,
                "plan_id": plan_id,
                "plan_version": 1,
                "chain": ids,
                "refunded_amount": refunded,
                "created_at": at,
            }
        )
        rewards += [
            {
                "id": f"rwd_{n:018d}{r.level:02d}",
                "purchase_id": pid,
                "level": r.level,
                "fan_id": r.fan_id,
                "amount": r.amount,
                "currency": "USD",
                "reversed_amount": back.get(r.level, 0),
                "state": "pending",
                "available_at": at + timedelta(days=30),
                "created_at": at,
            }
            for r in split.rewards
        ]
    with engine.begin() as conn:
        for at in range(0, len(purchases), BATCH):
            conn.execute(insert(Purchase), purchases[at : at + BATCH])
        for at in range(0, len(rewards), BATCH):
            conn.execute(insert(Reward), rewards[at : at + BATCH])
    engine.dispose()
    print(f"  inserted {fans} fans, {sales} purchases, {len(rewards)} rewards", flush=True)


def timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run ``fn``; print wall time and this process's CPU time (SQLite runs in-process,
    so on a busy machine CPU time is the steadier figure)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  {label:<50} {wall:7.2f} s wall {cpu:7.2f} s cpu", flush=True)
    return result


def measure(url: str) -> None:
    print(f"  load average before measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cpus)")
    engine = make_engine(url)
    session = make_sessionmaker(engine)()
    data = timed(
        "artist_insights (forced: read + analyse + store)",
        insights.artist_insights,
        session,
        ARTIST,
        force=True,
    )
    timed("artist_insights (served from the cache)", insights.artist_insights, session, ARTIST)
    graph = data["graph"]
    print(f"    graph: {graph['fans']} fans, {graph['edges']} edges, depth {graph['depth']}")
    roi = timed("program_return (whole history)", insights.program_return, session, ARTIST)
    print(f"    return_bps {roi['return_bps']}, attributed sales {roi['attributed_sales']}")
    sim = timed("simulate [1000, 500]", insights.simulate, session, ARTIST, [1000, 500])
    print(f"    simulated {sim['total_rewards']} vs actual {sim['actual_rewards']}")
    best = data["top"]["pagerank"][0]["fan_id"]
    ltv = timed("fan_lifetime_value (top PageRank fan)", insights.fan_lifetime_value, session, best)
    print(f"    lifetime value {ltv}")

    # Where the time goes: the reads, then the pure analytics.
    from royalties import insights as pure
    from royalties.services.insights import _load_summary, _load_uplines, _rewards_by_fan

    summary = timed("  reads: sales added up per chain, buyer, day", _load_summary, session, ARTIST)
    print(f"    {len(summary.chains)} chain groups, {len(summary.spent)} buyers")
    by_fan = timed("  reads: rewards per fan", _rewards_by_fan, session, ARTIST)
    sponsors, handles = timed("  reads: fans and uplines", _load_uplines, session, summary.fans)
    session.rollback()
    timed(
        "  analyse (graph, ranks, tops, picture)",
        pure.analyse,
        summary,
        sponsors,
        handles=handles,
        rewards_by_fan=by_fan,
    )
    del summary, by_fan, sponsors, handles
    session.close()
    engine.dispose()

    # Memory: forced insights alone in a fresh process (spawned, so nothing of this one
    # is counted): its peak RSS, then in another its peak of Python allocations.
    spawn = mp.get_context("spawn")
    for traced in (False, True):
        with spawn.Pool(1) as pool:
            peak = pool.apply(forced_peak, (url, traced))
        what = (
            "peak Python allocations (tracemalloc, forced insights)"
            if traced
            else "peak RSS of a process doing forced insights (ru_maxrss)"
        )
        print(f"  {what:<56} {peak / 2**20:8.1f} MiB", flush=True)
    print(f"  load average after measuring: {os.getloadavg()[0]:.1f}")


def forced_peak(url: str, traced: bool) -> int:
    """Forced insights in this (fresh) process; its peak RSS, or with ``traced`` the peak
    of Python allocations, in bytes."""
    engine = make_engine(url)
    session = make_sessionmaker(engine)()
    if traced:
        tracemalloc.start()
    insights.artist_insights(session, ARTIST, force=True)
    session.close()
    engine.dispose()
    if traced:
        return tracemalloc.get_traced_memory()[1]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fans", type=int, default=100_000)
    parser.add_argument("--sales", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PG database")
    parser.add_argument(
        "--reuse", metavar="FILE", help="measure a SQLite file an earlier run populated"
    )
    args = parser.parse_args()
    if args.reuse:
        print(f"SQLite (reused {args.reuse})", flush=True)
        measure(f"sqlite:///{args.reuse}")
        return

    if args.postgres:
        name = f"roy_bench_insights_{uuid.uuid4().hex[:8]}"
        admin = create_engine(database_url(PG_SERVER), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(database_url(PG_SERVER)).set(database=name).render_as_string(False)
        label = "PostgreSQL"
    else:
        tmp = tempfile.mkdtemp(prefix="roy-bench-insights-")
        url = f"sqlite:///{tmp}/bench.db"
        label = f"SQLite ({tmp}/bench.db, kept for --reuse)"
    try:
        print(f"{label}: {args.fans} fans, {args.sales} sales (seed {args.seed})", flush=True)
        t0 = time.perf_counter()
        upgrade(url)
        child = mp.get_context("fork").Process(
            target=populate, args=(url, args.fans, args.sales, args.seed)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"populating failed with exit code {child.exitcode}")
        print(f"  set-up (migrate + bulk insert) {time.perf_counter() - t0:.1f} s", flush=True)
        measure(url)
    finally:
        if args.postgres:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
