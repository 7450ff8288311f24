"""What people see of payouts: a payout, a page of them, one with its audit trail, and
why a run did not pay some fans. Only reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties.errors import Forbidden, NotFound
from royalties.models import Payout, PayoutEvent
from royalties.pagination import keyset, page
from royalties.payouts.payable import NOT_PAID_REASONS

if TYPE_CHECKING:
    from royalties.payouts.runs import RunReport


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
    return [
        {"reason": reason, "description": words, "count": report.not_paid[reason]}
        for reason, words in NOT_PAID_REASONS.items()
        if report.not_paid.get(reason)
    ]
