"""Fan sign-up and profiles."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import graph
from royalties.db import utcnow
from royalties.errors import NotFound, ValidationFailed
from royalties.fraud import signals
from royalties.fraud.detectors import FraudConfig
from royalties.keys import issue_key
from royalties.models import Fan, ShareLink
from royalties.services._tx import transactional


@dataclass(frozen=True)
class SignedUp:
    fan: Fan
    api_key: str


@dataclass(frozen=True)
class Profile:
    fan: Fan
    downline: dict[int, int]


def resolve_ref(session: Session, ref: str) -> str:
    """The sponsor named by a sign-up ``ref``: an active share code's owner, or a fan id."""
    owner = session.scalar(
        select(ShareLink.fan_id).where(ShareLink.code == ref, ShareLink.active.is_(True))
    )
    if owner is None and session.get(Fan, ref) is not None:
        owner = ref
    if owner is None:
        raise ValidationFailed(
            "ref is not an active share code or a fan id", fields={"ref": ["unknown or disabled"]}
        )
    return owner


@transactional
def sign_up(
    session: Session,
    *,
    handle: str,
    email: str | None,
    ref: str | None,
    signup_ip_hash: str | None = None,
    fraud_config: FraudConfig | None = None,
) -> SignedUp:
    sponsor_id = resolve_ref(session, ref) if ref else None
    fan = graph.create_fan(session, handle=handle, email=email, sponsor_id=sponsor_id)
    fan.signup_ip_hash = signup_ip_hash
    if sponsor_id is not None:
        session.flush()
        signals.check_signup_farm(session, sponsor_id, fraud_config or FraudConfig(), utcnow())
    return SignedUp(fan, issue_key(session, "fan", fan.id))


def get_fan(session: Session, fan_id: str) -> Fan:
    fan = session.get(Fan, fan_id)
    if fan is None:
        raise NotFound(f"fan {fan_id} does not exist")
    return fan


@transactional
def set_notifications(session: Session, fan_id: str, *, on: bool) -> Profile:
    """Switch the fan's emails about rewards and payouts on or off
    (``royalties.notify.fans``); messages already queued are dropped when their turn
    comes. Raises NotFound for an unknown fan."""
    fan = get_fan(session, fan_id)
    fan.notify_email = on
    session.flush()
    return profile(session, fan_id)


def profile(session: Session, fan_id: str) -> Profile:
    return Profile(get_fan(session, fan_id), graph.downline_counts(session, fan_id))
