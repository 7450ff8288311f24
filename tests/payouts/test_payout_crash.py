"""A payout run killed with SIGKILL while Stripe holds the answer to a transfer it has
already made: the next run finishes the payout with the same idempotency key, so the
fan is paid exactly once and the ledger stays sound. Real processes, the real CLI, the
real SDK, a standalone fake Stripe; works on SQLite (a file) and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from api.dev.fake_stripe import standalone
from royalties import ledger
from royalties.db import make_sessionmaker
from royalties.models import Fan, Payout, PayoutEvent

REPO = Path(__file__).resolve().parents[2]
MIN_PAYOUT = 1000


# -- helpers shared with test_payout_concurrency.py and test_reconcile.py ---------------


def cli_env(db_url: str, stripe_url: str, **extra: str) -> dict[str, str]:
    """The environment ``python -m api.cli`` needs to reach this database and this fake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    env.update(
        DATABASE_URL=db_url,
        STRIPE_API_KEY="sk_test_x",
        STRIPE_API_BASE=stripe_url,
        MIN_PAYOUT=str(MIN_PAYOUT),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def start_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def fresh_session(engine: Engine) -> Iterator[Session]:
    """A short-lived session: on SQLite any open transaction holds the write lock
    (BEGIN IMMEDIATE), so nothing may stay open while another process works."""
    with make_sessionmaker(engine)() as session:
        try:
            yield session
        finally:
            session.expunge_all()  # what was read stays readable after the rollback
            session.rollback()


def link_account(engine: Engine, fan_id: str, account_id: str) -> None:
    """What an ``account.updated`` webhook leaves behind: a connected, payable account."""
    with fresh_session(engine) as session:
        fan = session.get(Fan, fan_id)
        assert fan is not None
        fan.stripe_account_id = account_id
        fan.payouts_enabled = True
        fan.transfers_active = True
        session.commit()


def balances(engine: Engine, fan_id: str) -> tuple[int, int]:
    """(available, paid) of a fan in USD."""
    with fresh_session(engine) as session:
        lines = [b for b in ledger.fan_balances(session, fan_id) if b.currency == "USD"]
        return (lines[0].available, lines[0].paid) if lines else (0, 0)


def all_payouts(engine: Engine) -> list[Payout]:
    with fresh_session(engine) as session:
        return list(session.scalars(select(Payout).order_by(Payout.created_at, Payout.id)))


def ledger_problems(engine: Engine) -> list[str]:
    with fresh_session(engine) as session:
        return ledger.check(session)


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def transfer_keys(requests: list[dict[str, Any]]) -> list[str | None]:
    return [
        r["idempotency_key"]
        for r in requests
        if r["method"] == "POST" and r["path"] == "/v1/transfers"
    ]


# -- the tests ----------------------------------------------------------------------------


def kill_mid_transfer(env: dict[str, str], remote: Any, *args: str, held: int = 1) -> None:
    """Start ``payouts run`` and SIGKILL it once Stripe has made the ``held`` transfers
    whose answers it holds (the first ``held`` transfers)."""
    remote.delay("transfers", 10, count=held)
    proc = start_cli("payouts", "run", *args, env=env)
    try:
        wait_for(
            lambda: len(remote.transfers) >= held or proc.poll() is not None,
            timeout=30,
            what=f"{held} held transfer(s)",
        )
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
        if held == 1:
            assert len(remote.transfers) == 1
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def test_a_run_killed_while_stripe_holds_the_answer_is_finished_by_the_next_run_exactly_once(
    shop, engine, db_url
):
    fan = shop.api.fan()
    shop.earn(fan, 3000)  # the fan earns 1500
    shop.api.session.rollback()
    with standalone() as remote:
        account = remote.create_account()["id"]
        link_account(engine, fan.id, account)
        env = cli_env(db_url, remote.url)

        kill_mid_transfer(env, remote)

        [payout] = all_payouts(engine)
        assert payout.state in ("pending", "submitted")
        assert payout.stripe_transfer_id is None
        assert balances(engine, fan.id) == (0, 0)  # claimed: in clearing, not yet paid
        assert ledger_problems(engine) == []

        again = run_cli("payouts", "run", env=env)
        assert again.returncode == 0, again.stderr

        transfers = remote.transfers
        assert len(transfers) == 1
        assert (transfers[0]["amount"], transfers[0]["destination"]) == (1500, account)
        [paid] = all_payouts(engine)
        assert (paid.id, paid.state) == (payout.id, "paid")
        assert paid.stripe_transfer_id == transfers[0]["id"]
        # Soon after, the key is reused (the request might still be running): replayed.
        assert transfer_keys(remote.requests) == [payout.id, payout.id]
        assert balances(engine, fan.id) == (0, 1500)
        assert ledger_problems(engine) == []
        with fresh_session(engine) as session:
            trail = session.scalars(
                select(PayoutEvent.to_state)
                .where(PayoutEvent.payout_id == payout.id)
                .order_by(PayoutEvent.id)
            ).all()
        assert trail == ["pending", "submitted", "submitted", "paid"]

        assert run_cli("payouts", "run", env=env).returncode == 0  # a third run pays nobody
        assert len(remote.transfers) == 1
        assert balances(engine, fan.id) == (0, 1500)


def test_a_killed_run_leaves_the_fans_it_had_not_reached_untouched_and_the_next_run_pays_all_once(
    shop, engine, db_url
):
    fans = [shop.api.fan() for _ in range(3)]
    for n, fan in enumerate(fans):
        shop.earn(fan, 2000 + 1000 * n)  # 1000, 1500, 2000
    shop.api.session.rollback()
    earned = {fan.id: 1000 + 500 * n for n, fan in enumerate(fans)}
    with standalone() as remote:
        accounts = {}
        for fan in fans:
            accounts[fan.id] = remote.create_account()["id"]
            link_account(engine, fan.id, accounts[fan.id])
        env = cli_env(db_url, remote.url)

        kill_mid_transfer(env, remote, "--concurrency", "1")  # one fan after the other

        [open_one] = all_payouts(engine)
        assert open_one.state in ("pending", "submitted")
        untouched = [f.id for f in fans if f.id != open_one.fan_id]
        assert all(balances(engine, f) == (earned[f], 0) for f in untouched)

        assert run_cli("payouts", "run", env=env).returncode == 0

        transfers = remote.transfers
        by_destination = {t["destination"]: t["amount"] for t in transfers}
        assert len(transfers) == 3
        assert by_destination == {accounts[f]: earned[f] for f in earned}
        payouts = all_payouts(engine)
        assert sorted((p.fan_id, p.amount, p.state) for p in payouts) == sorted(
            (f, earned[f], "paid") for f in earned
        )
        assert {p.stripe_transfer_id for p in payouts} == {t["id"] for t in transfers}
        assert all(balances(engine, f) == (0, earned[f]) for f in earned)
        assert ledger_problems(engine) == []


def test_a_run_killed_in_the_middle_of_concurrent_sends_is_finished_by_the_next_run_once(
    shop, engine, db_url
):
    """Eight fans, four transfers in flight at once; Stripe holds three answers when the
    run is SIGKILLed. The next run settles what Stripe made and pays the rest."""
    fans = [shop.api.fan() for _ in range(8)]
    for n, fan in enumerate(fans):
        shop.earn(fan, 2000 + 200 * n)  # 1000, 1100, ...
    shop.api.session.rollback()
    earned = {fan.id: 1000 + 100 * n for n, fan in enumerate(fans)}
    with standalone() as remote:
        accounts = {}
        for fan in fans:
            accounts[fan.id] = remote.create_account()["id"]
            link_account(engine, fan.id, accounts[fan.id])
        env = cli_env(db_url, remote.url)
        kill_mid_transfer(env, remote, "--concurrency", "4", held=3)
        assert ledger_problems(engine) == []
        unsettled = [p for p in all_payouts(engine) if p.state != "paid"]
        assert len(unsettled) >= 3  # the held ones at least: claimed, not known paid

        again = run_cli("payouts", "run", "--concurrency", "4", env=env)
        assert again.returncode == 0, (again.stdout, again.stderr)

        transfers = remote.transfers
        assert sorted(t["destination"] for t in transfers) == sorted(accounts.values())
        assert {t["destination"]: t["amount"] for t in transfers} == {
            accounts[f]: earned[f] for f in earned
        }
        payouts = all_payouts(engine)
        assert sorted((p.fan_id, p.state) for p in payouts) == sorted((f, "paid") for f in earned)
        assert {p.stripe_transfer_id for p in payouts} == {t["id"] for t in transfers}
        assert all(balances(engine, f) == (0, earned[f]) for f in earned)
        assert ledger_problems(engine) == []
