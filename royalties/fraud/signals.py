"""A signal's whole life: recorded (at purchase, at sign-up, by the scans), cleared, read.

A signal is recorded once per finding, on the reward, fan or link it concerns; the
sign-up check and the scans record the same kind on the same subject at most once per
window, counting cleared signals too (so a clearance is not undone by the next scan
finding the same facts again; facts found after the window are a new signal).

A signal on a fan or a link is *active* until an admin clears it: once, with a reason,
recorded with who and when. :func:`carries_active_signal` is the one expression that
reads this state; the purchase path embeds it in its two reads. A signal on a reward
is not cleared: deciding the reward settles it (``royalties.fraud.review``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, Select, SQLColumnExpression, exists, func, select
from sqlalchemy.orm import Session

from royalties import audit
from royalties.audit import Actor
from royalties.db import utcnow
from royalties.errors import Conflict, NotFound, ValidationFailed
from royalties.fraud import detectors
from royalties.models import Click, Fan, FraudSignal, Purchase, SignalClearance
from royalties.pagination import keyset, page
from royalties.services._tx import unit_of_work

SUBJECT_TYPES = ("reward", "fan", "link")
CLEARABLE = ("fan", "link")
SIGNAL_STATES = ("active", "cleared")


def carries_active_signal(subject_type: str, subject_id: SQLColumnExpression[str]) -> Exists:
    """SQL: the fan or link ``subject_id`` carries a signal nobody has cleared.

    Two index probes (the subject's signals, then each one's clearance by its UNIQUE
    key), so it costs the purchase path nothing it did not pay before when no signal
    exists."""
    return exists().where(
        FraudSignal.subject_type == subject_type,
        FraudSignal.subject_id == subject_id,
        ~exists().where(SignalClearance.signal_id == FraudSignal.id),
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
    """A signal of this kind on this subject since ``since``, cleared or not."""
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


# -- clearing ---------------------------------------------------------------------------

_MAX_ID = 2**63 - 1  # the column is a BIGINT


def parse_id(text: str) -> int:
    """A signal's id written as text; text that is no id (or too large) names no signal."""
    if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= _MAX_ID:
        return int(text)
    raise NotFound("no signal has that id")


def clear(
    session: Session,
    *,
    signal_id: int,
    reason: str,
    cleared_by: str,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Clear one signal on a fan or a link: it holds no new reward from now on (rewards
    it already held stay held until decided). Once per signal, audited. Commits."""
    if not reason.strip():
        raise ValidationFailed("say why the signal is cleared", fields={"reason": ["blank"]})
    with unit_of_work(session):
        signal = session.get(FraudSignal, signal_id, with_for_update=True)
        if signal is None:
            raise NotFound(f"signal {signal_id} does not exist")
        if signal.subject_type not in CLEARABLE:
            raise Conflict(
                f"signal {signal_id} is on reward {signal.subject_id}: it holds only that "
                "reward, so approve or reject the reward instead of clearing the signal"
            )
        earlier = _clearance_of(session, signal_id)
        if earlier is not None:
            raise Conflict(
                f"signal {signal_id} was already cleared by {earlier.cleared_by} "
                f"at {earlier.cleared_at.isoformat()}"
            )
        clearance = SignalClearance(signal_id=signal_id, reason=reason[:500], cleared_by=cleared_by)
        session.add(clearance)
        session.flush()
        detail = {
            "kind": signal.kind,
            "subject_type": signal.subject_type,
            "subject_id": signal.subject_id,
            "reason": clearance.reason,
        }
        audit.record(session, actor, "signal.cleared", str(signal_id), detail)
        return describe(signal, clearance)


def _clearance_of(session: Session, signal_id: int) -> SignalClearance | None:
    return session.scalar(select(SignalClearance).where(SignalClearance.signal_id == signal_id))


# -- reading ----------------------------------------------------------------------------


def describe(signal: FraudSignal, clearance: SignalClearance | None) -> dict[str, Any]:
    """A signal as admins see it, with its clearance (or ``None`` while active)."""
    return {
        "id": signal.id,
        "kind": signal.kind,
        "subject_type": signal.subject_type,
        "subject_id": signal.subject_id,
        "reason": signal.reason,
        "created_at": signal.created_at,
        "state": "active" if clearance is None else "cleared",
        "cleared": None
        if clearance is None
        else {
            "reason": clearance.reason,
            "cleared_by": clearance.cleared_by,
            "cleared_at": clearance.cleared_at,
        },
    }


def _with_clearance() -> Select[FraudSignal, SignalClearance]:
    return select(FraudSignal, SignalClearance).outerjoin(
        SignalClearance, SignalClearance.signal_id == FraudSignal.id
    )


def on_subjects(session: Session, subject_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every signal on these rewards, fans or links, cleared ones too, by subject id."""
    wanted = sorted(set(subject_ids))
    out: dict[str, list[dict[str, Any]]] = {}
    if not wanted:
        return out
    rows = session.execute(
        _with_clearance().where(FraudSignal.subject_id.in_(wanted)).order_by(FraudSignal.id)
    )
    for signal, clearance in rows:
        out.setdefault(signal.subject_id, []).append(describe(signal, clearance))
    return out


def list_signals(
    session: Session,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    state: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Signals newest first, optionally of one subject or in one state (``active`` or
    ``cleared``); ``cursor`` from the previous page."""
    query = _with_clearance()
    if subject_type is not None:
        query = query.where(FraudSignal.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(FraudSignal.subject_id == subject_id)
    if state == "active":
        query = query.where(SignalClearance.id.is_(None))
    elif state == "cleared":
        query = query.where(SignalClearance.id.is_not(None))
    elif state is not None:
        raise ValidationFailed("state is active or cleared", fields={"state": ["unknown"]})
    query = keyset(query, FraudSignal.created_at, FraudSignal.id, limit=limit, cursor=cursor)
    rows = page(session.execute(query).all(), limit, lambda row: (row[0].created_at, row[0].id))
    return [describe(signal, clearance) for signal, clearance in rows.items], rows.next_cursor
