"""Payout use cases: connect a fan's Stripe account, run payouts, handle webhooks,
list payouts, and reconcile the ledger with Stripe."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, event, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from royalties import payouts as machine
from royalties.db import insert_or_ignore, utcnow
from royalties.errors import (
    Forbidden,
    NotFound,
    PaymentDeclined,
    PaymentUncertain,
    ValidationFailed,
)
from royalties.holds import mature_due
from royalties.ids import new_id
from royalties.models import Fan, Payout, PayoutEvent, PayoutRun, WebhookEvent
from royalties.payments.stripe import AccountInfo, StripeGateway, TransferInfo
from royalties.services._tx import unit_of_work

# -- onboarding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PayoutAccount:
    account_id: str
    payouts_enabled: bool
    transfers_active: bool
    onboarding_url: str


def connect_account(
    session: Session,
    gateway: StripeGateway,
    *,
    fan_id: str,
    refresh_url: str,
    return_url: str,
    country: str | None = None,
    platform_country: str = "US",
) -> PayoutAccount:
    """Create the fan's Express account once (a retry reuses it) and a fresh onboarding
    link. An account in another country than the platform's is created under the
    recipient service agreement, which Stripe requires for cross-border payouts."""
    fan = session.get(Fan, fan_id)
    if fan is None:
        raise NotFound(f"fan {fan_id} does not exist")
    if fan.stripe_account_id is None:
        _create_account(session, gateway, fan, country or platform_country, platform_country)
    assert fan.stripe_account_id is not None
    url = gateway.create_account_link(
        account_id=fan.stripe_account_id, refresh_url=refresh_url, return_url=return_url
    )
    return PayoutAccount(fan.stripe_account_id, fan.payouts_enabled, fan.transfers_active, url)


def _create_account(
    session: Session, gateway: StripeGateway, fan: Fan, country: str, platform_country: str
) -> None:
    """Create the fan's account. Stripe dedupes concurrent first calls on the key. A call
    that gets no clear answer may still have made the account, and Stripe replays a
    saved 500 under its key: so look for the account; not found, the fan's next try
    uses a new key (``account_attempts``) and the error is raised."""
    key = f"account-{fan.id}" + (f"-{fan.account_attempts}" if fan.account_attempts else "")
    started = int(utcnow().timestamp()) - 60
    try:
        account = gateway.create_express_account(
            fan_id=fan.id,
            email=fan.email,
            idempotency_key=key,
            country=country.upper(),
            recipient=country.upper() != platform_country.upper(),
        )
    except PaymentUncertain:
        found = _look_for_account(gateway, fan.id, started)
        if found is None:
            with unit_of_work(session):
                fan.account_attempts += 1
            raise
        account = found
    with unit_of_work(session):
        session.refresh(fan, with_for_update=True)
        if fan.stripe_account_id is None:  # a concurrent call may have stored one first
            _store_account(fan, account)


def _look_for_account(gateway: StripeGateway, fan_id: str, since: int) -> AccountInfo | None:
    try:
        return gateway.find_account(fan_id=fan_id, created_since=since)
    except (PaymentUncertain, PaymentDeclined):
        return None


def onboarding_link(
    session: Session, gateway: StripeGateway, *, fan_id: str, refresh_url: str, return_url: str
) -> str:
    """A new onboarding link for a fan that already has an account (the refresh page)."""
    fan = session.get(Fan, fan_id)
    if fan is None:
        raise NotFound(f"fan {fan_id} does not exist")
    if fan.stripe_account_id is None:
        raise NotFound(
            "No Stripe account has been set up for payouts yet: press “Set up payouts” on "
            "the fan page."
        )
    return gateway.create_account_link(
        account_id=fan.stripe_account_id, refresh_url=refresh_url, return_url=return_url
    )


def refresh_account(session: Session, gateway: StripeGateway, *, fan_id: str) -> AccountInfo | None:
    """Ask Stripe where the fan's account stands now and store it (the return page).
    None when the fan has no account yet."""
    fan = session.get(Fan, fan_id)
    if fan is None:
        raise NotFound(f"fan {fan_id} does not exist")
    if fan.stripe_account_id is None:
        return None
    account = gateway.retrieve_account(fan.stripe_account_id)
    with unit_of_work(session):
        _store_account(fan, account)
    return account


def _store_account(fan: Fan, account: AccountInfo) -> None:
    fan.stripe_account_id = account.id
    fan.payouts_enabled = account.payouts_enabled
    fan.transfers_active = account.transfers_active


# -- payout runs --------------------------------------------------------------------------


@dataclass
class RunReport:
    run_id: str
    outcomes: list[machine.Outcome] = field(default_factory=list)
    # reason (machine.NOT_PAID_REASONS) -> how many (fan, currency) pairs were not paid
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


Progress = Callable[[str, int], None]  # (event, n): ("total", n) once, then ("done", 1) per payout

DEFAULT_CONCURRENCY = 32


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
    min_payout: int | machine.Minimums,
    now: datetime | None = None,
    progress: Progress | None = None,
    concurrency: int = 1,
    rekey_after: timedelta = machine.REKEY_AFTER,
) -> RunReport:
    """One payout run: mature due rewards, read the platform balance, then -- up to
    ``concurrency`` at once -- settle or retry open payouts and claim and send a payout
    for every payable fan and currency at or above its minimum, as far as the platform
    balance covers them (the rest stays available; the report says how much)."""
    minimums = (
        min_payout if isinstance(min_payout, machine.Minimums) else machine.Minimums(min_payout)
    )
    now = now or utcnow()
    lock = threading.Lock()
    report_tick = progress or (lambda _event, _n: None)

    def tick(event: str, n: int) -> None:
        with lock:
            report_tick(event, n)

    run = PayoutRun(id=new_id("run"), min_payout=minimums.default, started_at=now)
    with unit_of_work(session):
        session.add(run)
        mature_due(session, now=now)
    report = RunReport(run.id)

    with _one_connection(session.get_bind()) as work:
        retry = machine.open_payouts(work)
        plan = machine.survey(work, minimums)
        work.rollback()
    report.not_paid = dict(plan.not_paid)
    budget = _Budget(gateway.available_balance())

    def short_of_balance() -> None:
        with lock:
            report.not_paid["platform_balance_short"] = (
                report.not_paid.get("platform_balance_short", 0) + 1
            )

    jobs: list[tuple[str, int, Callable[[Session], machine.Outcome | None]]] = []
    for open_one in retry:
        if budget.reserve(open_one.currency, open_one.amount):
            retry_job = _retry_job(gateway, open_one.id, rekey_after)
            jobs.append((open_one.currency, open_one.amount, retry_job))
        else:
            short_of_balance()
    for candidate in plan.candidates:
        if budget.reserve(candidate.currency, candidate.available):
            claim = _claim_job(gateway, run.id, candidate, minimums.of(candidate.currency), now)
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
        session.get(PayoutRun, run.id).finished_at = utcnow()  # type: ignore[union-attr]
    return report


def not_paid_view(report: RunReport) -> list[dict[str, Any]]:
    """The report's not-paid counts, in the order of ``NOT_PAID_REASONS``."""
    return [
        {"reason": reason, "description": words, "count": report.not_paid[reason]}
        for reason, words in machine.NOT_PAID_REASONS.items()
        if report.not_paid.get(reason)
    ]


def _retry_job(
    gateway: StripeGateway, payout_id: str, rekey_after: timedelta
) -> Callable[[Session], machine.Outcome]:
    return lambda work: machine.send(work, gateway, payout_id, rekey_after=rekey_after)


def _claim_job(
    gateway: StripeGateway,
    run_id: str,
    candidate: machine.Candidate,
    minimum: int,
    now: datetime,
) -> Callable[[Session], machine.Outcome | None]:
    def job(work: Session) -> machine.Outcome | None:
        with unit_of_work(work):
            attempt = machine.claim(
                work,
                run_id=run_id,
                candidate=candidate,
                min_payout=minimum,
                now=now,
                limit=candidate.available,
            )
        return None if attempt is None else machine.send_claimed(work, gateway, attempt)

    return job


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
            with _pooled(bind) if shared else _one_connection(bind) as work:
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


@contextmanager
def _one_connection(bind: Any) -> Iterator[Session]:
    """A session that keeps one connection for its whole life, planning as it goes.

    A run is two short transactions per payout. A session bound to the engine checks a
    connection out for each and back in after (a reset on return): more than the
    transactions' own statements cost. A bind that is already a connection is used as
    it is."""
    if not isinstance(bind, Engine):
        with Session(bind=bind, expire_on_commit=False) as work:
            yield work
        return
    with (
        bind.connect() as conn,
        _custom_plans(conn),
        Session(bind=conn, expire_on_commit=False) as work,
    ):
        yield work


@contextmanager
def _pooled(engine: Engine) -> Iterator[Session]:
    """A session that takes a pooled connection per transaction, planning as it goes
    (``SET LOCAL``: the setting ends with each transaction, and its connection goes back
    to the pool as it was)."""
    with Session(bind=engine, expire_on_commit=False) as work:
        if engine.dialect.name == "postgresql":

            @event.listens_for(work, "after_begin")
            def _plan(_session: Session, _tx: Any, conn: Connection) -> None:
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")

        yield work


@contextmanager
def _custom_plans(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, plan every statement for the tables as they are now.

    A run grows ``payouts``, ``payout_events`` and ``ledger_transactions`` by a row or
    two per payout, from nothing. PostgreSQL switches a statement executed more than five
    times to a cached *generic* plan -- psycopg prepares repeated statements, and the
    foreign-key checks and PL/pgSQL triggers cache theirs per connection -- and keeps it
    until the table's statistics change. Chosen while the table was nearly empty, that
    plan is a sequential scan, so each payout costs O(payouts so far): a 100k-fan run
    would be O(N^2) wherever autovacuum's ANALYZE does not keep up. A custom plan is made
    for the parameters and the table's current size at each execution (tens of
    microseconds), and depends on neither the statistics nor when they were gathered."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
    conn.commit()
    try:
        yield
    finally:
        try:
            conn.rollback()
            conn.exec_driver_sql("RESET plan_cache_mode")
            conn.commit()
        except Exception:  # a broken connection: the pool drops it, setting and all
            conn.invalidate()


# -- webhooks -----------------------------------------------------------------------------


def handle_webhook(
    session: Session, event: dict[str, Any], gateway: Callable[[], StripeGateway]
) -> str:
    """Act on a verified Stripe event once; a replay of the same event id changes nothing.

    Events arrive more than once and out of order, so an event only says *which* object
    changed: its current state is fetched from Stripe (``gateway`` is called only then),
    before any transaction opens, so no lock is held across the call. A fetch that fails
    raises before anything is written, the event id included, so Stripe's redelivery is
    handled in full."""
    obj = (event.get("data") or {}).get("object") or {}
    kind = event.get("type")
    object_id = str(obj.get("id"))
    account: AccountInfo | None = None
    transfer: TransferInfo | None = None
    if kind == "account.updated":
        fan_id = session.scalar(select(Fan.id).where(Fan.stripe_account_id == object_id))
        session.rollback()
        account = gateway().retrieve_account(object_id) if fan_id else None
    elif kind in ("transfer.reversed", "transfer.updated"):
        known = session.scalar(select(Payout.id).where(Payout.stripe_transfer_id == object_id))
        session.rollback()
        transfer = gateway().retrieve_transfer(object_id) if known else None
    with unit_of_work(session):
        first = session.execute(
            insert_or_ignore(session, WebhookEvent)
            .values(id=str(event["id"]), type=str(event.get("type", "")), received_at=utcnow())
            .returning(WebhookEvent.id)
        ).scalar()
        if first is None:
            return "duplicate"
        if kind == "account.updated":
            fan = session.scalar(select(Fan).where(Fan.stripe_account_id == object_id))
            if fan is None or account is None:
                return "ignored: unknown account"
            _store_account(fan, account)
            return "account updated"
        if kind in ("transfer.reversed", "transfer.updated"):
            if transfer is None:
                return "ignored: unknown transfer"
            machine.apply_reversal(session, object_id, transfer.amount_reversed)
            return "transfer reversal applied"
        return "ignored"


# -- reading ------------------------------------------------------------------------------


def payout_view(payout: Payout) -> dict[str, Any]:
    return {
        "id": payout.id,
        "run_id": payout.run_id,
        "fan_id": payout.fan_id,
        "currency": payout.currency,
        "amount": payout.amount,
        "state": payout.state,
        "stripe_transfer_id": payout.stripe_transfer_id,
        "reversed_amount": payout.reversed_amount,
        "failure_reason": payout.failure_reason,
        "attempts": payout.attempts,
        "created_at": payout.created_at,
        "updated_at": payout.updated_at,
    }


def list_payouts(
    session: Session, *, fan_id: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; ``cursor`` is the id of the last payout of the previous page."""
    query = select(Payout).order_by(Payout.created_at.desc(), Payout.id.desc()).limit(limit + 1)
    if fan_id is not None:
        query = query.where(Payout.fan_id == fan_id)
    if cursor:
        last = session.get(Payout, cursor)
        if last is None:
            raise ValidationFailed("bad cursor", fields={"cursor": ["not a cursor we issued"]})
        query = query.where(
            or_(
                Payout.created_at < last.created_at,
                and_(Payout.created_at == last.created_at, Payout.id < last.id),
            )
        )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return [payout_view(p) for p in rows], (rows[-1].id if more else None)


def get_payout(session: Session, payout_id: str, *, fan_id: str | None) -> dict[str, Any]:
    payout = session.get(Payout, payout_id)
    if payout is None:
        raise NotFound(f"payout {payout_id} does not exist")
    if fan_id is not None and payout.fan_id != fan_id:
        raise Forbidden("this payout belongs to another fan")
    events = session.scalars(
        select(PayoutEvent).where(PayoutEvent.payout_id == payout_id).order_by(PayoutEvent.id)
    )
    view = payout_view(payout)
    view["events"] = [
        {"at": e.at, "from_state": e.from_state, "to_state": e.to_state, "detail": e.detail}
        for e in events
    ]
    return view


# -- reconciliation -----------------------------------------------------------------------


def settle_open(session: Session, gateway: StripeGateway) -> Iterator[tuple[bool, str]]:
    """Look at Stripe for the transfer of every open payout: settle those it has as
    paid, and yield ``(settled, sentence)`` for each, so what is left can be listed."""
    for open_one in machine.open_payouts(session):
        payout = session.get(Payout, open_one.id)
        session.rollback()
        if payout is None or payout.state not in ("pending", "submitted"):
            continue
        try:
            found = gateway.find_transfer(
                destination=payout.destination,
                transfer_group=payout.run_id,
                payout_id=payout.id,
            )
        except (PaymentDeclined, PaymentUncertain) as exc:
            yield (
                False,
                f"payout {payout.id} is {payout.state}: could not ask Stripe ({exc.detail})",
            )
            continue
        if found is None:
            yield (
                False,
                f"payout {payout.id} ({payout.amount} {payout.currency}) is {payout.state} and "
                "Stripe has no transfer for it: the next payout run sends it",
            )
            continue
        outcome = machine.mark_paid(session, payout.id, found, detail="found by reconcile")
        if outcome.state == "paid":
            yield True, f"payout {payout.id} settled as paid: Stripe has transfer {found.id}"


def reconcile(
    session: Session, gateway: StripeGateway, *, since: datetime, until: datetime
) -> Iterator[str]:
    """Compare Stripe's transfers created in [since, until) with the ledger's payouts;
    yields one sentence per mismatch."""
    transfers = {
        t.id: t
        for t in gateway.list_transfers(
            created_gte=int(since.timestamp()), created_lt=int(until.timestamp())
        )
    }
    paid = list(
        session.scalars(
            select(Payout).where(
                or_(
                    Payout.stripe_transfer_id.in_(list(transfers) or [""]),
                    and_(
                        Payout.state == "paid",
                        Payout.updated_at >= since,
                        Payout.updated_at < until,
                    ),
                )
            )
        )
    )
    by_transfer = {p.stripe_transfer_id: p for p in paid if p.stripe_transfer_id}
    for tid, t in sorted(transfers.items()):
        payout = by_transfer.get(tid)
        if payout is None:
            claimed = t.metadata.get("payout_id", "?")
            yield (
                f"Stripe transfer {tid} ({t.amount} {t.currency}, payout {claimed}) "
                "has no paid payout in the ledger"
            )
            continue
        yield from _differences(t, payout)
    for payout in paid:
        if payout.state != "paid" or payout.stripe_transfer_id in transfers:
            continue
        # Not in the window's list: Stripe stamps whole seconds, and a transfer made by an
        # earlier attempt (a crashed run) predates the run that marked it paid. Ask for it.
        try:
            found = gateway.retrieve_transfer(str(payout.stripe_transfer_id))
        except PaymentDeclined:
            yield (
                f"payout {payout.id} is paid in the ledger but Stripe has "
                f"no transfer {payout.stripe_transfer_id}"
            )
            continue
        yield from _differences(found, payout)


def _differences(t: TransferInfo, payout: Payout) -> Iterator[str]:
    """How a Stripe transfer and the payout it settled disagree, if they do."""
    if (t.amount, t.currency, t.destination) != (
        payout.amount,
        payout.currency,
        payout.destination,
    ):
        yield (
            f"transfer {t.id} is {t.amount} {t.currency} to {t.destination} but payout "
            f"{payout.id} says {payout.amount} {payout.currency} to {payout.destination}"
        )
    if t.amount_reversed != payout.reversed_amount:
        yield (
            f"transfer {t.id} has {t.amount_reversed} reversed at Stripe, "
            f"the ledger {payout.reversed_amount}"
        )
