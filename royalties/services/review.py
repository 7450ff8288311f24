"""Recording fraud signals, holding rewards, and the admin review queue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import fraud, ledger
from royalties.db import utcnow
from royalties.errors import Conflict, NotFound, ValidationFailed
from royalties.ledger import AccountKind
from royalties.models import Click, Fan, FraudSignal, Purchase, ReviewDecision, Reward
from royalties.services._tx import unit_of_work


def record(
    session: Session,
    findings: Iterable[fraud.Finding],
    *,
    subject_type: str,
    subject_id: str,
    details: dict[str, Any] | None = None,
) -> int:
    """Add one signal per finding (does not commit); returns how many."""
    n = 0
    for finding in findings:
        session.add(
            FraudSignal(
                kind=finding.kind,
                subject_type=subject_type,
                subject_id=subject_id,
                reason=finding.reason[:500],
                details=details or {},
            )
        )
        n += 1
    return n


def check_signup_farm(
    session: Session, sponsor_id: str, config: fraud.FraudConfig, now: datetime
) -> None:
    """After a sign-up under ``sponsor_id``: flag the sponsor if its recent recruits
    mostly share one address (once per window). Does not commit."""
    since = now - timedelta(minutes=config.signup_window_minutes)
    addresses = session.scalars(
        select(Fan.signup_ip_hash).where(Fan.sponsor_id == sponsor_id, Fan.created_at >= since)
    ).all()
    finding = fraud.signup_farm(addresses, config)
    if finding is None or _recent(session, "signup_farm", "fan", sponsor_id, since):
        return
    record(session, [finding], subject_type="fan", subject_id=sponsor_id)


def _recent(
    session: Session, kind: str, subject_type: str, subject_id: str, since: datetime
) -> bool:
    return (
        session.scalar(
            select(FraudSignal.id).where(
                FraudSignal.kind == kind,
                FraudSignal.subject_type == subject_type,
                FraudSignal.subject_id == subject_id,
                FraudSignal.created_at >= since,
            )
        )
        is not None
    )


@dataclass(frozen=True)
class ScanReport:
    click_floods: int
    storefront_bursts: int


def scan(session: Session, config: fraud.FraudConfig, *, now: datetime | None = None) -> ScanReport:
    """The batch signals: click floods on links and storefront bursts under fans. Commits."""
    now = now or utcnow()
    floods = bursts = 0
    with unit_of_work(session):
        since = now - timedelta(minutes=config.click_window_minutes)
        per_address = (
            select(Click.code, Click.ip_hash, func.count().label("n"))
            .where(Click.at >= since)
            .group_by(Click.code, Click.ip_hash)
            .having(func.count() >= config.click_min)
            .subquery()
        )
        for code, clicks in session.execute(
            select(per_address.c.code, func.max(per_address.c.n)).group_by(per_address.c.code)
        ):
            sales = session.scalar(select(func.count()).where(Purchase.share_code == code)) or 0
            finding = fraud.click_flood(int(clicks), sales, config)
            if finding and not _recent(session, "click_flood", "link", code, since):
                floods += record(session, [finding], subject_type="link", subject_id=code)

        window = now - timedelta(minutes=config.signup_window_minutes)
        first = (
            select(Purchase.buyer_id, func.min(Purchase.created_at).label("first_at"))
            .group_by(Purchase.buyer_id)
            .subquery()
        )
        rows = session.execute(
            select(Fan.sponsor_id, Fan.created_at, first.c.first_at, Purchase.storefront_id)
            .join(first, first.c.buyer_id == Fan.id)
            .join(
                Purchase, (Purchase.buyer_id == Fan.id) & (Purchase.created_at == first.c.first_at)
            )
            .where(Fan.sponsor_id.is_not(None), Fan.created_at >= window)
        ).all()
        by_sponsor: dict[str, list[tuple[str, int]]] = {}
        for sponsor, signed_up, first_at, storefront in rows:
            minutes = int((first_at - signed_up).total_seconds() // 60)
            by_sponsor.setdefault(sponsor, []).append((storefront, minutes))
        for sponsor, firsts in sorted(by_sponsor.items()):
            finding = fraud.storefront_burst(firsts, config)
            if finding and not _recent(session, "storefront_burst", "fan", sponsor, window):
                bursts += record(session, [finding], subject_type="fan", subject_id=sponsor)
    return ScanReport(floods, bursts)


# -- the queue ----------------------------------------------------------------------------


def _signals_by_subject(
    session: Session, subject_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    if not subject_ids:
        return out
    for signal in session.scalars(
        select(FraudSignal).where(FraudSignal.subject_id.in_(subject_ids)).order_by(FraudSignal.id)
    ):
        out.setdefault(signal.subject_id, []).append(
            {
                "kind": signal.kind,
                "subject_type": signal.subject_type,
                "subject_id": signal.subject_id,
                "reason": signal.reason,
                "created_at": signal.created_at,
            }
        )
    return out


def queue(
    session: Session, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Held rewards, oldest first, each with every signal on it, its fan and its link."""
    query = (
        select(Reward, Purchase.share_code)
        .join(Purchase, Purchase.id == Reward.purchase_id)
        .where(Reward.review_state == "held")
        .order_by(Reward.id)
        .limit(limit + 1)
    )
    if cursor:
        query = query.where(Reward.id > cursor)
    rows = session.execute(query).all()
    page = rows[:limit]
    subjects = [s for r, code in page for s in (r.id, r.fan_id, code) if s]
    signals = _signals_by_subject(session, subjects)
    items = [
        {
            "reward_id": r.id,
            "purchase_id": r.purchase_id,
            "fan_id": r.fan_id,
            "level": r.level,
            "amount": r.amount,
            "currency": r.currency,
            "created_at": r.created_at,
            "signals": [
                *signals.get(r.id, []),
                *signals.get(r.fan_id, []),
                *(signals.get(code, []) if code else []),
            ],
        }
        for r, code in page
    ]
    return items, (page[-1][0].id if len(rows) > limit else None)


def decide(
    session: Session, *, reward_id: str, decision: str, reason: str, decided_by: str
) -> dict[str, Any]:
    """Approve (the reward moves on as usual) or reject (its money goes back to the
    artist) one held reward. Audited; each reward is decided once. Commits."""
    if decision not in ("approve", "reject"):
        raise ValidationFailed("decision is approve or reject", fields={"decision": ["unknown"]})
    with unit_of_work(session):
        reward = session.get(Reward, reward_id, with_for_update=True, populate_existing=True)
        if reward is None:
            raise NotFound(f"reward {reward_id} does not exist")
        if reward.review_state != "held":
            state = reward.review_state or "not flagged"
            raise Conflict(f"reward {reward_id} is not held for review (it is {state})")
        purchase = session.get(Purchase, reward.purchase_id)
        assert purchase is not None
        if decision == "approve":
            reward.review_state = "approved"
        else:
            reward.review_state = "rejected"
            left = reward.amount - reward.reversed_amount
            ledger.post(
                session,
                kind="review_rejected",
                ref=reward.id,
                currency=reward.currency,
                lines=[
                    ledger.Line(AccountKind.FAN_PENDING, reward.fan_id, -left, reward.id),
                    ledger.Line(AccountKind.ARTIST_EARNINGS, purchase.artist_id, left),
                ],
            )
        record_ = ReviewDecision(
            reward_id=reward.id, decision=decision, reason=reason[:500], decided_by=decided_by
        )
        session.add(record_)
        session.flush()
        return {
            "reward_id": reward.id,
            "decision": decision,
            "reason": record_.reason,
            "decided_by": decided_by,
            "decided_at": record_.decided_at,
            "review_state": reward.review_state,
        }
