"""Two payout runs at the same time, in two processes (the real CLI) or two threads (the
service with separate sessions), over twenty fans with money: every fan gets exactly one
transfer for exactly what it earned, every payout ends paid, and the ledger is sound.
PostgreSQL only: there the runs truly overlap (SQLite serialises every writer)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from royalties.db import make_sessionmaker
from royalties.models import PayoutRun
from royalties.payments.stripe import StripeGateway
from royalties.payouts import run_payouts
from tests.helpers import age_last_attempt
from tests.payouts.test_payout_crash import (
    MIN_PAYOUT,
    all_payouts,
    balances,
    cli_env,
    fresh_session,
    ledger_problems,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.postgres

FANS = 20


@pytest.fixture
def funded(shop) -> dict[str, tuple[str, int]]:
    """Twenty fans with 1000..2900 available and a payable connected account each:
    ``{fan_id: (account_id, earned)}``."""
    out = {}
    for n in range(FANS):
        fan = shop.api.fan()
        shop.earn(fan, 2000 + 200 * n)  # the fan earns half
        out[fan.id] = (shop.connect(fan), 1000 + 100 * n)
    shop.api.session.rollback()
    return out


def assert_each_fan_paid_exactly_once(shop, engine: Engine, funded) -> None:
    transfers = shop.fake.transfers
    per_account = Counter(t["destination"] for t in transfers)
    assert per_account == Counter({account: 1 for account, _ in funded.values()})
    amounts = {t["destination"]: t["amount"] for t in transfers}
    assert amounts == {account: earned for account, earned in funded.values()}
    payouts = all_payouts(engine)
    assert len(payouts) == FANS
    assert {p.state for p in payouts} == {"paid"}
    assert {p.stripe_transfer_id for p in payouts} == {t["id"] for t in transfers}
    for fan_id, (_, earned) in funded.items():
        assert balances(engine, fan_id) == (0, earned)
    assert ledger_problems(engine) == []


def runs_overlapped(engine: Engine) -> bool:
    with fresh_session(engine) as session:
        runs = session.scalars(select(PayoutRun)).all()
    assert len(runs) == 2 and all(r.finished_at for r in runs)
    return max(r.started_at for r in runs) < min(r.finished_at for r in runs)  # type: ignore[type-var]


def run_two_processes(shop, db_url: str) -> None:
    env = cli_env(db_url, shop.fake.url)
    procs = [start_cli("payouts", "run", env=env) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, (out, err)


def test_two_payout_runs_in_two_processes_at_once_pay_every_fan_exactly_once(
    shop, engine, db_url, funded
):
    run_two_processes(shop, db_url)
    assert_each_fan_paid_exactly_once(shop, engine, funded)


def test_two_overlapping_runs_in_two_processes_with_slow_transfers_pay_every_fan_exactly_once(
    shop, engine, db_url, funded
):
    shop.fake.delay("transfers", 0.3, count=FANS)
    run_two_processes(shop, db_url)
    assert runs_overlapped(engine)
    assert_each_fan_paid_exactly_once(shop, engine, funded)


def test_two_payout_runs_in_two_threads_with_their_own_sessions_pay_every_fan_exactly_once(
    shop, engine, funded
):
    shop.fake.delay("transfers", 0.1, count=FANS)
    gateway = StripeGateway("sk_test_x", shop.fake.url)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def one_run() -> None:
        try:
            with make_sessionmaker(engine)() as session:
                start.wait(timeout=10)
                run_payouts(session, gateway, min_payout=MIN_PAYOUT)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert runs_overlapped(engine)
    assert_each_fan_paid_exactly_once(shop, engine, funded)


# -- a declined payout is never sent again by a run that read it as open ---------------------


def lock_waiters(engine: Engine) -> int:
    with engine.connect() as conn:  # a new connection: pg_stat_activity is per-snapshot
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_a_payout_declined_for_one_run_is_not_sent_again_by_a_run_that_read_it_as_open(
    shop, engine
):
    """Runs A and B both retry payout P (left ``submitted`` by a 5xx). Stripe declines A's
    attempt; B read P as open just before A stored the decline. Database row locks (held
    by the test, released in order) make the interleaving deterministic:

    A: submitted, POST -> 400, UPDATE P failed ....(waits for the test's lock)...... commit
    B:                                       read P open, UPDATE P (waits for A) ... then?

    Once A has failed P and returned its money to ``available``, B must not send P."""
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    account = shop.connect(fan)
    shop.fake.fail_next("transfers", 500)
    [first] = shop.run()["payouts"]
    assert first["state"] == "submitted" and shop.fake.transfers == []
    # Long enough ago that a retry looks, finds nothing, and sends under a new key (the
    # first key holds Stripe's saved 500).
    age_last_attempt(shop.api.session, first["id"], minutes=3)

    gateway = StripeGateway("sk_test_x", shop.fake.url, timeout_seconds=10)
    errors: list[BaseException] = []

    def a_run() -> None:
        try:
            with make_sessionmaker(engine)() as session:
                run_payouts(session, gateway, min_payout=MIN_PAYOUT)
        except BaseException as exc:
            errors.append(exc)

    blocker = engine.connect()  # holds the fan's ledger account: A's decline waits on it
    threads = [threading.Thread(target=a_run) for _ in range(2)]
    try:
        blocker.execute(
            text("SELECT id FROM ledger_accounts WHERE id = :id FOR UPDATE"),
            {"id": f"fan_available:{fan.id}:USD"},
        )
        shop.fake.fail_next("POST transfers", 400, message="No such destination (for a moment)")
        threads[0].start()  # A
        wait_for(lambda: lock_waiters(engine) == 1, timeout=30, what="A to wait on the lock")
        threads[1].start()  # B
        wait_for(lambda: lock_waiters(engine) == 2, timeout=30, what="B to wait on A")
    finally:
        blocker.rollback()
        blocker.close()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []

    [payout] = all_payouts(engine)
    assert payout.state == "failed"
    available, paid = balances(engine, fan.id)
    sent = sum(t["amount"] - t["amount_reversed"] for t in shop.fake.transfers)
    assert (available, paid) == (1500, 0)
    assert sent == paid, f"{sent} transferred to {account} but the ledger says {paid} paid"
    assert ledger_problems(engine) == []
