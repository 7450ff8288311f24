"""What people see of payouts: a payout, a page of them, one with its audit trail, the
runs with what each paid, and why a run did not pay some fans. Only reads.

A run's payouts are the ones it claimed, in the state they are in now; a run also
settles or retries payouts that earlier runs left open, and those stay listed under the
run that claimed them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties.db import utcnow
from royalties.errors import Forbidden, NotFound
from royalties.models import Fan, Payout, PayoutEvent, PayoutRun
from royalties.models.payouts import PAYOUT_STATES
from royalties.pagination import Page, keyset, page
from royalties.payouts.payable import NOT_PAID_REASONS
from royalties.payouts.tracking import status
from royalties.payouts.view import payout_view

if TYPE_CHECKING:
    from royalties.payouts.runs import RunReport


def list_payouts(
    session: Session, *, fan_id: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, optionally one fan's; ``cursor`` from the previous page."""
    query = select(Payout)
    if fan_id is not None:
        query = query.where(Payout.fan_id == fan_id)
    query = keyset(query, Payout.created_at, Payout.id, limit=limit, cursor=cursor)
    rows = page(list(session.scalars(query)), limit, lambda p: (p.created_at, p.id))
    return [payout_view(p) for p in rows.items], rows.next_cursor


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


def not_paid_view(report: RunReport) -> list[dict[str, Any]]:
    """The report's not-paid counts, in the order of ``NOT_PAID_REASONS``."""
    return _not_paid(report.not_paid)


def _not_paid(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"reason": reason, "description": words, "count": counts[reason]}
        for reason, words in NOT_PAID_REASONS.items()
        if counts.get(reason)
    ]


def list_runs(session: Session, *, limit: int, cursor: str | None) -> Page[dict[str, Any]]:
    """Runs newest first, each with how many of its payouts are in each state."""
    query = keyset(
        select(PayoutRun), PayoutRun.started_at, PayoutRun.id, limit=limit, cursor=cursor
    )
    rows = page(list(session.scalars(query)), limit, lambda r: (r.started_at, r.id))
    counts = _state_counts(session, [r.id for r in rows.items])
    now = utcnow()
    return Page([_run_view(r, counts.get(r.id, {}), now) for r in rows.items], rows.next_cursor)


def get_run(session: Session, run_id: str) -> dict[str, Any]:
    run = session.get(PayoutRun, run_id)
    if run is None:
        raise NotFound(f"There is no payout run {run_id}.")
    return _run_view(run, _state_counts(session, [run_id]).get(run_id, {}), utcnow())


def run_payouts_page(
    session: Session, run_id: str, *, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """The payouts ``run_id`` claimed, newest first, each with its fan's handle and, when
    it failed, why (the detail of its latest move to ``failed`` in the audit trail:
    Stripe's code and message)."""
    query = select(Payout, Fan.handle).join(Fan, Fan.id == Payout.fan_id)
    query = keyset(
        query.where(Payout.run_id == run_id),
        Payout.created_at,
        Payout.id,
        limit=limit,
        cursor=cursor,
    )
    rows = page(list(session.execute(query).all()), limit, lambda r: (r[0].created_at, r[0].id))
    failed = [p.id for p, _ in rows.items if p.state == "failed"]
    reasons: dict[str, str] = {}
    if failed:
        events = session.execute(
            select(PayoutEvent.payout_id, PayoutEvent.detail)
            .where(PayoutEvent.payout_id.in_(failed), PayoutEvent.to_state == "failed")
            .order_by(PayoutEvent.id)
        )
        reasons = {payout_id: detail for payout_id, detail in events}  # the latest wins
    items = [
        {**payout_view(p), "handle": handle, "failure": reasons.get(p.id) or p.failure_reason}
        for p, handle in rows.items
    ]
    return Page(items, rows.next_cursor)


def _state_counts(session: Session, run_ids: list[str]) -> dict[str, dict[str, int]]:
    if not run_ids:
        return {}
    rows = session.execute(
        select(Payout.run_id, Payout.state, func.count())
        .where(Payout.run_id.in_(run_ids))
        .group_by(Payout.run_id, Payout.state)
    )
    counts: dict[str, dict[str, int]] = {}
    for run_id, state, n in rows:
        counts.setdefault(run_id, {})[state] = n
    return counts


def _run_view(run: PayoutRun, counts: dict[str, int], now: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": status(run, now=now),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "requested_by": run.requested_by,
        "total": run.total,
        "done": run.done,
        "error": run.error,
        "payouts": {state: counts.get(state, 0) for state in PAYOUT_STATES},
        "not_paid": _not_paid(run.not_paid or {}),
        "platform_balance_short": [
            {"currency": c, "amount": a} for c, a in sorted((run.balance_short or {}).items())
        ],
    }
