"""A signal's whole life: recorded (at purchase, at sign-up, by the scans), read.

A signal is recorded once per finding, on the reward, fan or link it concerns; the
sign-up check and the scans record the same kind on the same subject at most once per
window. A signal on a fan or a link holds every new reward of that fan or link.
:func:`carries_active_signal` is the one expression that reads this state; the
purchase path embeds it in its two reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, SQLColumnExpression, exists, func, select
from sqlalchemy.orm import Session

from royalties.db import utcnow
from royalties.fraud import detectors
from royalties.models import Click, Fan, FraudSignal, Purchase
from royalties.services._tx import unit_of_work


def carries_active_signal(subject_type: str, subject_id: SQLColumnExpression[str]) -> Exists:
    """SQL: the fan or link ``subject_id`` carries a signal (one index probe)."""
    return exists().where(
        FraudSignal.subject_type == subject_type, FraudSignal.subject_id == subject_id
    )


def record(
    session: Session,
    findings: Iterable[detectors.Finding],
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
    session: Session, sponsor_id: str, config: detectors.FraudConfig, now: datetime
) -> None:
    """After a sign-up under ``sponsor_id``: flag the sponsor if its recent recruits
    mostly share one address (once per window). Does not commit."""
    since = now - timedelta(minutes=config.signup_window_minutes)
    addresses = session.scalars(
        select(Fan.signup_ip_hash).where(Fan.sponsor_id == sponsor_id, Fan.created_at >= since)
    ).all()
    finding = detectors.signup_farm(addresses, config)
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


def scan(
    session: Session, config: detectors.FraudConfig, *, now: datetime | None = None
) -> ScanReport:
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
            finding = detectors.click_flood(int(clicks), sales, config)
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
            finding = detectors.storefront_burst(firsts, config)
            if finding and not _recent(session, "storefront_burst", "fan", sponsor, window):
                bursts += record(session, [finding], subject_type="fan", subject_id=sponsor)
    return ScanReport(floods, bursts)


# -- reading ----------------------------------------------------------------------------


def describe(signal: FraudSignal) -> dict[str, Any]:
    """A signal as admins see it."""
    return {
        "kind": signal.kind,
        "subject_type": signal.subject_type,
        "subject_id": signal.subject_id,
        "reason": signal.reason,
        "created_at": signal.created_at,
    }


def on_subjects(session: Session, subject_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every signal on these rewards, fans or links, by subject id."""
    wanted = sorted(set(subject_ids))
    out: dict[str, list[dict[str, Any]]] = {}
    if not wanted:
        return out
    query = select(FraudSignal).where(FraudSignal.subject_id.in_(wanted)).order_by(FraudSignal.id)
    for signal in session.scalars(query):
        out.setdefault(signal.subject_id, []).append(describe(signal))
    return out
