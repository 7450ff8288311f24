"""Payout use cases: connect a fan's Stripe account, run payouts, handle webhooks,
list payouts, and reconcile the ledger with Stripe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from royalties import payouts as machine
from royalties.db import insert_or_ignore, utcnow
from royalties.errors import Forbidden, NotFound, PaymentDeclined, ValidationFailed
from royalties.holds import mature_due
from royalties.ids import new_id
from royalties.models import Fan, Payout, PayoutEvent, PayoutRun, WebhookEvent
from royalties.payments.stripe import StripeGateway, TransferInfo
from royalties.services._tx import unit_of_work

# -- onboarding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PayoutAccount:
    account_id: str
    payouts_enabled: bool
    onboarding_url: str


def connect_account(
    session: Session, gateway: StripeGateway, *, fan_id: str, public_base_url: str
) -> PayoutAccount:
    """Create the fan's Express account once (a retry reuses it) and a fresh onboarding link."""
    fan = session.get(Fan, fan_id)
    if fan is None:
        raise NotFound(f"fan {fan_id} does not exist")
    if fan.stripe_account_id is None:
        # Stripe dedupes on the key, so two concurrent first calls yield one account.
        account = gateway.create_express_account(
            fan_id=fan.id, email=fan.email, idempotency_key=f"account-{fan.id}"
        )
        with unit_of_work(session):
            fan.stripe_account_id = account.id
            fan.payouts_enabled = account.payouts_enabled
    assert fan.stripe_account_id is not None
    url = gateway.create_account_link(
        account_id=fan.stripe_account_id,
        refresh_url=f"{public_base_url}/v1/fans/{fan.id}/payout-account",
        return_url=f"{public_base_url}/",
    )
    return PayoutAccount(fan.stripe_account_id, fan.payouts_enabled, url)


# -- payout runs --------------------------------------------------------------------------


@dataclass
class RunReport:
    run_id: str
    outcomes: list[machine.Outcome] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)


Progress = Callable[[str, int], None]  # (event, n): ("total", n) once, then ("done", 1) per payout


def run_payouts(
    session: Session,
    gateway: StripeGateway,
    *,
    min_payout: int,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """One payout run: mature due rewards, retry open payouts with their own keys, then
    claim and send a payout for every fan and currency at or above ``min_payout``."""
    now = now or utcnow()
    tick = progress or (lambda _event, _n: None)
    run = PayoutRun(id=new_id("run"), min_payout=min_payout, started_at=now)
    with unit_of_work(session):
        session.add(run)
        mature_due(session, now=now)
    report = RunReport(run.id)

    with _one_connection(session) as work:
        retry = machine.open_payout_ids(work)
        fresh = machine.candidates(work, min_payout)
        work.rollback()
        tick("total", len(retry) + len(fresh))
        for payout_id in retry:
            report.outcomes.append(machine.send(work, gateway, payout_id))
            tick("done", 1)
        for candidate in fresh:
            with unit_of_work(work):
                attempt = machine.claim(
                    work, run_id=run.id, candidate=candidate, min_payout=min_payout, now=now
                )
            if attempt is not None:
                report.outcomes.append(machine.send_claimed(work, gateway, attempt))
            tick("done", 1)
    with unit_of_work(session):
        session.get(PayoutRun, run.id).finished_at = utcnow()  # type: ignore[union-attr]
    return report


@contextmanager
def _one_connection(session: Session) -> Iterator[Session]:
    """A session that keeps one connection for the whole run, planning as it goes.

    A run is two short transactions per payout. A session bound to the engine checks a
    connection out for each and back in after (on PostgreSQL a pre-ping each time, and
    a reset on return): more than the transactions' own statements cost. A session
    already bound to a connection is used as it is."""
    bind = session.get_bind()
    if not isinstance(bind, Engine):
        yield session
        return
    with (
        bind.connect() as conn,
        _custom_plans(conn),
        Session(bind=conn, expire_on_commit=False) as work,
    ):
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


def handle_webhook(session: Session, event: dict[str, Any]) -> str:
    """Act on a verified Stripe event once; a replay of the same event id changes nothing."""
    with unit_of_work(session):
        first = session.execute(
            insert_or_ignore(session, WebhookEvent)
            .values(id=str(event["id"]), type=str(event.get("type", "")), received_at=utcnow())
            .returning(WebhookEvent.id)
        ).scalar()
        if first is None:
            return "duplicate"
        obj = (event.get("data") or {}).get("object") or {}
        kind = event.get("type")
        if kind == "account.updated":
            fan = session.scalar(select(Fan).where(Fan.stripe_account_id == obj.get("id")))
            if fan is None:
                return "ignored: unknown account"
            fan.payouts_enabled = bool(obj.get("payouts_enabled"))
            return "account updated"
        if kind in ("transfer.reversed", "transfer.updated"):
            payout = machine.apply_reversal(
                session, str(obj.get("id")), int(obj.get("amount_reversed") or 0)
            )
            return "transfer reversal applied" if payout else "ignored: unknown transfer"
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
