"""One payout run, the use case: mature due rewards, budget the platform balance, then
settle or retry open payouts and claim and send a payout for every payable fan.

This module owns every transaction of a run. It drives the machine step by step and
commits where the machine says state must be durable: a claim or a new attempt before
Stripe hears of it, each outcome once it is known; it rolls back after reads, so no
transaction is open across a call to Stripe. A fresh payout is two commits: the claim
(with its first attempt), then its outcome.

The platform balance is read once, up front, and shared by the senders as a budget per
currency: a payout it does not cover is not claimed (it stays available and is counted
``platform_balance_short``), and a currency is closed for the rest of the run once
Stripe answers that the balance does not cover a transfer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from royalties import audit
from royalties.audit import Actor
from royalties.db import utcnow
from royalties.errors import NotFound
from royalties.ids import new_id
from royalties.models import PayoutRun
from royalties.payments.stripe import StripeGateway
from royalties.payouts import machine
from royalties.payouts.connections import one_connection, pooled
from royalties.payouts.machine import Outcome
from royalties.payouts.payable import Candidate, Minimums, survey
from royalties.rewards import mature_due
from royalties.services._tx import unit_of_work

DEFAULT_CONCURRENCY = 32

Progress = Callable[[str, int], None]  # (event, n): ("total", n) once, then ("done", 1) per payout


@dataclass
class RunReport:
    run_id: str
    outcomes: list[Outcome] = field(default_factory=list)
    # reason (payable.NOT_PAID_REASONS) -> how many (fan, currency) pairs were not paid
    not_paid: dict[str, int] = field(default_factory=dict)
    # currency -> minor units left unpaid because the platform balance did not cover them
    short: dict[str, int] = field(default_factory=dict)

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    @property
    def complete(self) -> bool:
        """Everything payable was paid: nothing failed, nothing left unresolved at
        Stripe, nothing held back for lack of platform balance."""
        return not (self.count("failed") or self.count("submitted") or self.short)


class _Budget:
    """What the platform balance still covers, per currency, shared by the senders; a
    currency is closed once Stripe said the balance does not cover a transfer."""

    def __init__(self, available: dict[str, int]) -> None:
        self._left = dict(available)
        self._closed: set[str] = set()
        self._lock = threading.Lock()
        self.short: dict[str, int] = {}

    def reserve(self, currency: str, amount: int) -> bool:
        with self._lock:
            if currency in self._closed or self._left.get(currency, 0) < amount:
                self.short[currency] = self.short.get(currency, 0) + amount
                return False
            self._left[currency] -= amount
            return True

    def close(self, currency: str) -> None:
        with self._lock:
            self._closed.add(currency)

    def is_closed(self, currency: str, amount: int) -> bool:
        with self._lock:
            if currency in self._closed:
                self.short[currency] = self.short.get(currency, 0) + amount
                return True
            return False


def run_payouts(
    session: Session,
    gateway: StripeGateway,
    *,
    min_payout: int | Minimums,
    now: datetime | None = None,
    progress: Progress | None = None,
    concurrency: int = 1,
    rekey_after: timedelta = machine.REKEY_AFTER,
    run_id: str | None = None,
    actor: Actor | None = None,
) -> RunReport:
    """One payout run: mature due rewards, read the platform balance, then -- up to
    ``concurrency`` at once -- settle or retry open payouts and claim and send a payout
    for every payable fan and currency at or above its minimum, as far as the platform
    balance covers them (the rest stays available; the report says how much).

    ``run_id`` names a run already recorded (``tracking.start``); without it the run is
    recorded here. Its last commit writes the run's figures (total, done, what it did
    not pay and why) with ``finished_at``."""
    minimums = min_payout if isinstance(min_payout, Minimums) else Minimums(min_payout)
    now = now or utcnow()
    lock = threading.Lock()
    report_tick = progress or (lambda _event, _n: None)

    def tick(event: str, n: int) -> None:
        with lock:
            report_tick(event, n)

    with unit_of_work(session):
        if run_id is None:
            run_id = new_id("run")
            session.add(PayoutRun(id=run_id, min_payout=minimums.default, started_at=now))
            detail = {"min_payout": minimums.default, "concurrency": concurrency}
            audit.record(session, actor, "payout_run.started", run_id, detail)
        elif session.get(PayoutRun, run_id) is None:
            raise NotFound(f"payout run {run_id} does not exist")
        mature_due(session, now=now)
    report = RunReport(run_id)

    with one_connection(session.get_bind()) as work:
        retry = machine.open_payouts(work)
        plan = survey(work, minimums)
        work.rollback()
    report.not_paid = dict(plan.not_paid)
    budget = _Budget(gateway.available_balance())

    def short_of_balance() -> None:
        with lock:
            report.not_paid["platform_balance_short"] = (
                report.not_paid.get("platform_balance_short", 0) + 1
            )

    jobs: list[tuple[str, int, Callable[[Session], Outcome | None]]] = []
    for open_one in retry:
        if budget.reserve(open_one.currency, open_one.amount):
            retry_job = _retry_job(gateway, open_one.id, rekey_after)
            jobs.append((open_one.currency, open_one.amount, retry_job))
        else:
            short_of_balance()
    for candidate in plan.candidates:
        if budget.reserve(candidate.currency, candidate.available):
            claim = _claim_job(gateway, run_id, candidate, minimums.of(candidate.currency), now)
            jobs.append((candidate.currency, candidate.available, claim))
        else:
            short_of_balance()
    tick("total", len(jobs))

    def do(work: Session, currency: str, amount: int, job: Callable[[Session], Any]) -> None:
        if budget.is_closed(currency, amount):
            short_of_balance()
        else:
            outcome = job(work)
            if outcome is not None:
                if outcome.code == machine.BALANCE_INSUFFICIENT:
                    budget.close(currency)
                with lock:
                    report.outcomes.append(outcome)
        tick("done", 1)

    _in_parallel(session.get_bind(), concurrency, jobs, do)
    report.short = dict(budget.short)
    with unit_of_work(session):
        row = session.get(PayoutRun, run_id)
        assert row is not None
        row.finished_at = row.progress_at = utcnow()
        row.total = row.done = len(jobs)
        row.not_paid, row.balance_short = dict(report.not_paid), dict(report.short)
    return report


def _retry_job(
    gateway: StripeGateway, payout_id: str, rekey_after: timedelta
) -> Callable[[Session], Outcome]:
    return lambda work: _retry(work, gateway, payout_id, rekey_after=rekey_after)


def _claim_job(
    gateway: StripeGateway,
    run_id: str,
    candidate: Candidate,
    minimum: int,
    now: datetime,
) -> Callable[[Session], Outcome | None]:
    def job(work: Session) -> Outcome | None:
        with unit_of_work(work):  # claim and first attempt: durable before Stripe hears
            attempt = machine.claim(
                work,
                run_id=run_id,
                candidate=candidate,
                min_payout=minimum,
                now=now,
                limit=candidate.available,
            )
        return None if attempt is None else _end(work, machine.send_claimed(work, gateway, attempt))

    return job


def _retry(
    work: Session, gateway: StripeGateway, payout_id: str, *, rekey_after: timedelta
) -> Outcome:
    """Retry one open payout. While its last attempt may still be running at Stripe
    (``rekey_after``), send it again with the same key; after that, look first: settle
    it if Stripe has the transfer, else send it with a new key.

    Commits: the outcome of the look, or first that the payout is ``submitted`` for a
    new attempt (so a crash leaves it for retry), then its outcome."""
    now = utcnow()
    retry = machine.open_attempt(work, payout_id, now=now, rekey_after=rekey_after)
    work.rollback()  # it only read: nothing held open across a call to Stripe
    if isinstance(retry, Outcome):
        return retry
    if retry.new_key:  # the last attempt is over: look before sending it again
        settled = machine.settle_if_found(work, gateway, retry)
        if settled is not None:
            return _end(work, settled)
    attempt = machine.resend(work, retry, now=now)
    if isinstance(attempt, Outcome):
        return _end(work, attempt)
    work.commit()  # the new attempt is durable before Stripe hears of it
    return _end(work, machine.send_claimed(work, gateway, attempt))


def _end(work: Session, outcome: Outcome) -> Outcome:
    """Commit what a step wrote for its outcome; roll back a lost race (nothing written)."""
    if outcome.lost_race:
        work.rollback()
    else:
        work.commit()
    return outcome


def _in_parallel(
    bind: Any,
    concurrency: int,
    jobs: list[tuple[str, int, Callable[[Session], Any]]],
    do: Callable[[Session, str, int, Callable[[Session], Any]], None],
) -> None:
    """Run ``do(work, *job)`` for every job on up to ``concurrency`` threads. One thread
    keeps one connection for its whole life; several take a connection from the pool
    for each transaction only, so a thread waiting on Stripe holds none (32 senders need
    a few connections, not 32). Every payout is committed step by step, so a thread that
    dies loses nothing; the first error is raised once all threads have stopped."""
    pending: queue.SimpleQueue[tuple[str, int, Callable[[Session], Any]]] = queue.SimpleQueue()
    for job in jobs:
        pending.put(job)
    errors: list[BaseException] = []

    threads = max(1, min(concurrency, len(jobs)))
    shared = threads > 1 and isinstance(bind, Engine)

    def worker() -> None:
        try:
            with pooled(bind) if shared else one_connection(bind) as work:
                while not errors:
                    try:
                        job = pending.get_nowait()
                    except queue.Empty:
                        return
                    do(work, *job)
        except BaseException as exc:  # reported below, after every thread stopped
            errors.append(exc)

    if not shared:
        worker()  # a session bound to one connection cannot be shared between threads
    else:
        pool = [threading.Thread(target=worker, name=f"payouts-{n}") for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    if errors:
        raise errors[0]
