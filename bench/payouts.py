"""One payout run over N fans, against the fake Stripe on loopback, through the real SDK.

1. Creates a fresh database (SQLite: a temp file; PostgreSQL: a new database on
   ``--pg-server``, dropped at the end) and migrates it (``royalties.migrate.upgrade``).
2. Starts the fake Stripe as a child process on 127.0.0.1 with N onboarded connected
   accounts seeded in that process (the fake mints account ids itself; they are handed
   back through a file), so no per-account HTTP call is needed.
3. Bulk-loads N fans with those accounts (``payouts_enabled``) and an available balance
   each, through the ledger's own tables: one balanced ledger transaction per batch
   (``storefront_receivable`` -sum, ``fan_available`` +amount per fan), valid foreign keys.
4. Runs ONE ``royalties.payouts.run_payouts`` (``--concurrency`` transfers in
   flight at once) with a ``StripeGateway`` pointed at the fake whose
   ``create_transfer`` is timed (a subclass, only here), printing progress every 10%.
   ``--stripe-latency S`` makes the fake hold every request S seconds while it executes
   (real Stripe: ~0.3 s a transfer); ``--stripe-rate-limit N`` makes it answer 429
   beyond N requests a second of each kind, as Stripe's live mode does at about 100,
   and the gateway paces itself at 90% of it (``--pace`` overrides).
5. Prints the figures (wall time, transfers/s, time inside Stripe calls, time outside
   them per payout, SQL statements and commits per payout) and verifies: transfers at the
   fake == fans, every payout paid for the fan's whole balance, ``ledger.check`` clean.

Run: ``.venv/bin/python bench/payouts.py [--fans 100000] [--db sqlite|postgres]``;
``--fans 2000`` is a quick smoke run; ``--profile`` adds a cProfile of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make royalties/ and tests/ importable
    sys.path.insert(0, str(REPO))

from sqlalchemy import event, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from api.dev.fake_stripe import RemoteFake  # noqa: E402
from royalties import ledger  # noqa: E402
from royalties.db import (  # noqa: E402
    create_engine,
    database_url,
    make_engine,
    make_sessionmaker,
    utcnow,
)
from royalties.ids import new_id  # noqa: E402
from royalties.ledger import AccountKind  # noqa: E402
from royalties.migrate import upgrade  # noqa: E402
from royalties.models import (  # noqa: E402
    Fan,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    Storefront,
)
from royalties.payments.stripe import StripeGateway, TransferInfo  # noqa: E402
from royalties.payouts import DEFAULT_CONCURRENCY  # noqa: E402

CURRENCY = "USD"
MIN_PAYOUT = 1000
API_KEY = "sk_test_bench_payouts"


def amount_for(i: int) -> int:
    """Every fan is above the minimum: 1000..4999 minor units."""
    return MIN_PAYOUT + (i * 7919) % 4000


# ---------------------------------------------------------------- the fake Stripe


def serve_fake(accounts: int, ids_file: str) -> None:
    """Child process: seed ``accounts`` onboarded accounts, write their ids, then serve."""
    from api.dev.fake_stripe import FakeStripe

    fake = FakeStripe(hang_seconds=5)
    ids = [fake.create_account()["id"] for _ in range(accounts)]
    Path(ids_file).write_text("\n".join(ids))
    print(f"listening on {fake.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake._server.serve_forever()


@contextlib.contextmanager
def fake_stripe(accounts: int, workdir: Path) -> Iterator[tuple[str, list[str]]]:
    ids_file = workdir / "accounts.txt"
    cmd = [sys.executable, __file__, "--serve-fake", str(accounts), "--ids-file", str(ids_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake stripe did not start: {line!r}")
        yield line.removeprefix("listening on "), ids_file.read_text().split("\n")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fake_transfers(url: str) -> list[dict[str, Any]]:
    """Every transfer the fake holds (its control path; a long timeout for 100k)."""
    with urllib.request.urlopen(f"{url}/_fake/transfers", timeout=600) as resp:
        return json.loads(resp.read())["result"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the database


@contextlib.contextmanager
def fresh_database(kind: str, pg_server: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'payouts-bench.db'}"
        return
    name = f"roy_bench_payouts_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url(pg_server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url(pg_server)).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bulk_load(engine: Engine, accounts: list[str], batch: int) -> int:
    """N fans with a connected account and an available balance; returns the total."""
    now = utcnow()
    store_id = new_id("sf")
    receivable = ledger.account_id(AccountKind.STOREFRONT_RECEIVABLE, store_id, CURRENCY)
    total = 0
    with engine.begin() as conn:
        conn.execute(
            insert(Storefront),
            [{"id": store_id, "name": "Bench", "base_url": "https://shop.test", "created_at": now}],
        )
        conn.execute(
            insert(LedgerAccount),
            [
                {
                    "id": receivable,
                    "kind": AccountKind.STOREFRONT_RECEIVABLE,
                    "owner_id": store_id,
                    "currency": CURRENCY,
                }
            ],
        )
    for start in range(0, len(accounts), batch):
        chunk = range(start, min(start + batch, len(accounts)))
        fans = [new_id("fan") for _ in chunk]
        amounts = [amount_for(i) for i in chunk]
        with engine.begin() as conn:
            conn.execute(
                insert(Fan),
                [
                    {
                        "id": fan,
                        "handle": f"bench{i}",
                        "root_id": fan,
                        "storefront_id": store_id,
                        "stripe_account_id": accounts[i],
                        "payouts_enabled": True,
                        "transfers_active": True,
                        "created_at": now,
                    }
                    for fan, i in zip(fans, chunk, strict=True)
                ],
            )
            conn.execute(
                insert(LedgerAccount),
                [
                    {
                        "id": ledger.account_id(AccountKind.FAN_AVAILABLE, fan, CURRENCY),
                        "kind": AccountKind.FAN_AVAILABLE,
                        "owner_id": fan,
                        "currency": CURRENCY,
                    }
                    for fan in fans
                ],
            )
            txn = conn.execute(
                insert(LedgerTransaction)
                .values(
                    kind="bench_seed",
                    ref=f"bench-{start}",
                    currency=CURRENCY,
                    memo="payout bench",
                    created_at=now,
                )
                .returning(LedgerTransaction.id)
            ).scalar_one()
            entries = [
                {
                    "transaction_id": txn,
                    "account_id": ledger.account_id(AccountKind.FAN_AVAILABLE, fan, CURRENCY),
                    "currency": CURRENCY,
                    "amount": amount,
                    "reward_id": None,
                }
                for fan, amount in zip(fans, amounts, strict=True)
            ]
            entries.append(
                {
                    "transaction_id": txn,
                    "account_id": receivable,
                    "currency": CURRENCY,
                    "amount": -sum(amounts),
                    "reward_id": None,
                }
            )
            conn.execute(insert(LedgerEntry), entries)
        total += sum(amounts)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    return total


class Analyzer(threading.Thread):
    """ANALYZE the payout tables every ``every`` seconds from a side connection: what
    autovacuum does on a normal server. Off unless asked for (``--analyze-every``): the run
    plans each statement for the tables' current size (``plan_cache_mode``, see
    ``royalties.payouts.connections``), so it no longer needs fresh statistics to stay
    O(N). It once did: PostgreSQL kept the generic plans it cached while ``payouts`` was
    nearly empty (psycopg prepares repeated statements; foreign-key checks cache theirs
    per backend), sequential scans that made every payout cost O(payouts so far)."""

    TABLES = "payouts, payout_events, payout_runs, ledger_transactions, ledger_entries"

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.every, self.count = url, every, 0
        self.halt = threading.Event()

    def run(self) -> None:
        engine = create_engine(database_url(self.url), isolation_level="AUTOCOMMIT")
        try:
            while not self.halt.wait(self.every):
                with engine.connect() as conn:
                    conn.execute(text(f"ANALYZE {self.TABLES}"))
                self.count += 1
        finally:
            engine.dispose()


def autovacuum_setting(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW autovacuum")).scalar_one())


# ---------------------------------------------------------------- measuring


class TimedGateway(StripeGateway):
    """The real gateway, with the time spent inside ``create_transfer`` added up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.seconds = 0.0
        self._lock = threading.Lock()  # --runs > 1 shares the gateway between threads

    def create_transfer(self, **kwargs: Any) -> TransferInfo:  # type: ignore[override]
        t0 = time.perf_counter()
        try:
            return super().create_transfer(**kwargs)
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - t0
                self.calls += 1


@dataclass
class SqlCounter:
    statements: int = 0
    commits: int = 0
    seconds: float = 0.0
    _local: threading.local = field(default_factory=threading.local)

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)

    def _before(self, *_: Any) -> None:
        self._local.started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.statements += 1
        self.seconds += time.perf_counter() - self._local.started

    def _commit(self, *_: Any) -> None:
        self.commits += 1


class Progress:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.next_mark = 10
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()

    def __call__(self, what: str, n: int) -> None:
        with self._lock:
            self._tick(what, n)

    def _tick(self, what: str, n: int) -> None:
        if what == "total":  # with --runs K every run announces its own list
            self.total += n
            print(f"  run: {n} payouts to make", flush=True)
            return
        self.done += n
        while self.total and self.done * 100 >= self.next_mark * self.total:
            elapsed = time.perf_counter() - self.t0
            print(
                f"  {self.next_mark:3d}%  {self.done:>7} payouts  {elapsed:7.1f}s"
                f"  {self.done / elapsed:7.0f}/s",
                flush=True,
            )
            self.next_mark += 10


# ---------------------------------------------------------------- the benchmark


def bench(args: argparse.Namespace) -> int:
    from royalties.payouts import run_payouts

    n = args.fans
    print(f"payout bench: {n} fans on {args.db}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="payouts-bench-") as tmp,
        fresh_database(args.db, args.pg_server, Path(tmp)) as url,
    ):
        t0 = time.perf_counter()
        upgrade(url)
        t_migrate = time.perf_counter() - t0
        t0 = time.perf_counter()
        with fake_stripe(n, Path(tmp)) as (stripe_url, accounts):
            t_fake = time.perf_counter() - t0
            pool = {"null": NullPool}.get(args.sqlite_pool) if args.db == "sqlite" else None
            engine = make_engine(url, **({"poolclass": pool} if pool else {}))
            t0 = time.perf_counter()
            expected = bulk_load(engine, accounts, args.batch)
            t_load = time.perf_counter() - t0
            print(
                f"setup: migrate {t_migrate:.1f}s, fake Stripe with {n} accounts "
                f"{t_fake:.1f}s, bulk load {t_load:.1f}s ({n / t_load:.0f} fans/s)",
                flush=True,
            )

            remote = RemoteFake(stripe_url)
            if args.stripe_latency:  # every request takes this long, as at a real Stripe
                remote.set_latency(args.stripe_latency)
            if args.stripe_rate_limit:
                remote.set_rate_limit(args.stripe_rate_limit)
            pace = args.pace
            if pace is None:
                pace = 0.9 * args.stripe_rate_limit if args.stripe_rate_limit else 0.0
            analyzer = None
            if args.db == "postgres":
                print(f"server has autovacuum={autovacuum_setting(engine)}", flush=True)
                if args.analyze_every:
                    analyzer = Analyzer(url, args.analyze_every)
                    analyzer.start()
            gateway = TimedGateway(API_KEY, stripe_url, requests_per_second=pace)
            sql = SqlCounter()
            sql.attach(engine)
            progress = Progress()
            profiler = cProfile.Profile() if args.profile and args.runs == 1 else None
            reports: list[Any] = []

            def one_run() -> None:
                with make_sessionmaker(engine)() as session:
                    reports.append(
                        run_payouts(
                            session,
                            gateway,
                            min_payout=MIN_PAYOUT,
                            progress=progress,
                            concurrency=args.concurrency,
                        )
                    )

            t0 = time.perf_counter()
            progress.t0 = t0
            if profiler:
                profiler.enable()
            if args.runs == 1:
                one_run()
            else:
                threads = [threading.Thread(target=one_run) for _ in range(args.runs)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            if profiler:
                profiler.disable()
            wall = time.perf_counter() - t0
            if analyzer:
                analyzer.halt.set()
                analyzer.join()

            paid = sum(report.count("paid") for report in reports)
            # Every sender's time adds up: runs x concurrency threads each spend the wall.
            senders = args.runs * args.concurrency
            outside = senders * wall - gateway.seconds
            limit = f"{args.stripe_rate_limit:g} requests/s" if args.stripe_rate_limit else "none"
            print()
            print(f"fans                         {n}")
            print(f"concurrent runs (threads)    {args.runs}")
            print(f"transfers in flight per run  {args.concurrency}")
            print(f"fake Stripe latency          {args.stripe_latency:.3f} s per request")
            print(f"fake Stripe rate limit       {limit} (gateway paces at {pace:g}/s)")
            print(f"payouts paid                 {paid}")
            print(f"run wall time                {wall:.1f} s")
            print(f"transfers/s                  {paid / wall:.0f} (rate limit: {limit})")
            print(
                f"inside Stripe calls          {gateway.seconds:.1f} s thread time "
                f"({1000 * gateway.seconds / max(gateway.calls, 1):.2f} ms per call, "
                f"{gateway.calls} calls)"
            )
            label = "outside Stripe (x senders)" if senders > 1 else "outside Stripe calls"
            print(f"{label:<29}{outside:.1f} s ({1000 * outside / max(paid, 1):.2f} ms per payout)")
            print(
                f"SQL                          {sql.statements / max(paid, 1):.1f} statements"
                f" and {sql.commits / max(paid, 1):.1f} commits per payout,"
                f" {1000 * sql.seconds / max(paid, 1):.2f} ms per payout in execute"
            )
            print(f"setup (not in the run)       load {t_load:.1f} s, fake seeding {t_fake:.1f} s")
            if analyzer:
                print(
                    f"ANALYZE during the run       {analyzer.count} times"
                    f" (every {analyzer.every:.0f} s)"
                )

            if profiler:
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
                stats.print_stats(25)
                print(out.getvalue())

            t0 = time.perf_counter()
            transfers = fake_transfers(stripe_url)
            with make_sessionmaker(engine)() as session:
                states = dict(
                    session.execute(select(Payout.state, func.count()).group_by(Payout.state)).all()
                )
                paid_sum = session.scalar(
                    select(func.coalesce(func.sum(Payout.amount), 0)).where(Payout.state == "paid")
                )
                problems = ledger.check(session)
                left = session.scalar(
                    select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                    .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                    .where(LedgerAccount.kind == AccountKind.FAN_AVAILABLE)
                )
            engine.dispose()
            checks = {
                "transfers at the fake == fans": len(transfers) == n,
                "one transfer per account": len({t["destination"] for t in transfers}) == n,
                "every payout paid": states == {"paid": n},
                "paid == loaded balances == transferred": paid_sum
                == expected
                == sum(t["amount"] for t in transfers),
                "no fan_available left": left == 0,
                "ledger.check clean": problems == [],
            }
            print(f"verify ({time.perf_counter() - t0:.1f}s):")
            for name, ok in checks.items():
                print(f"  {'ok  ' if ok else 'FAIL'} {name}")
            if problems:
                print("  ledger:", problems[:5])
            return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--fans", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--batch", type=int, default=500, help="fans per bulk-load transaction")
    parser.add_argument(
        "--sqlite-pool",
        choices=("app", "null"),
        default="app",
        help="app: the engine as the app makes it (pooled); null: a new connection per checkout",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="payout runs at once (threads, own sessions)"
    )
    parser.add_argument(
        "--stripe-latency",
        type=float,
        default=0.0,
        help="seconds the fake takes for every request (real Stripe: ~0.3-1 s)",
    )
    parser.add_argument(
        "--stripe-rate-limit",
        type=float,
        default=0.0,
        help="requests a second of each kind the fake allows before 429 (live Stripe: ~100)",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=None,
        help="requests a second the gateway allows itself [default: 90%% of the rate limit, "
        "or unpaced]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="transfers in flight at once in a run [default: %(default)s, as the CLI]",
    )
    parser.add_argument(
        "--analyze-every",
        type=float,
        default=0.0,
        help="PostgreSQL: ANALYZE the payout tables every N seconds during the run, "
        "as autovacuum would [default: 0, never]",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the run (slower)")
    parser.add_argument("--serve-fake", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fake is not None:
        serve_fake(args.serve_fake, args.ids_file)
        return 0
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
