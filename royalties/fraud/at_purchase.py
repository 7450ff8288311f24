"""The fraud checks of a sale, run while ``record_purchase`` books it: which of its
rewards are held for review.

A reward is held when

- it is the level-1 reward and the buyer and the level-1 fan look like one person
  (``detectors.second_account``); the findings are recorded on that reward;
- its fan carries an active signal;
- it is the level-1 reward of the link's owner and the link carries an active signal.

"Active" is ``signals.carries_active_signal``; the purchase path reads it for the link
and for every fan of the upline inside the two queries it runs anyway, and hands the
answers here, so these rules cost no read of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from royalties.fraud import detectors, signals


class UplineFan(Protocol):
    """A fan of the sale's upline (level 1 first), as the purchase path read it."""

    @property
    def fan_id(self) -> str: ...

    @property
    def email(self) -> str | None: ...

    @property
    def signup_ip_hash(self) -> str | None: ...

    @property
    def flagged(self) -> bool:
        """The fan carries an active signal."""
        ...


def held_rewards(
    session: Session,
    earners: Sequence[tuple[str, str]],
    upline: Sequence[UplineFan],
    *,
    buyer_email: str | None,
    link_owner: str | None,
    link_flagged: bool,
    client_ip_hash: str | None,
) -> set[str]:
    """The ids of the rewards to hold, of ``earners`` (each ``(fan id, reward id)``), with
    the signals found on them recorded (not committed: the purchase's transaction is)."""
    if not earners:
        return set()
    held: set[str] = set()
    by_fan = dict(earners)
    level1 = upline[0]
    if level1.fan_id in by_fan:
        findings = detectors.second_account(
            buyer_email=buyer_email,
            fan_email=level1.email,
            purchase_address=client_ip_hash,
            fan_signup_address=level1.signup_ip_hash,
        )
        if findings:
            signals.record(
                session, findings, subject_type="reward", subject_id=by_fan[level1.fan_id]
            )
            held.add(by_fan[level1.fan_id])
    held |= {by_fan[fan.fan_id] for fan in upline if fan.flagged and fan.fan_id in by_fan}
    if link_flagged and link_owner in by_fan:
        held.add(by_fan[link_owner])
    return held
