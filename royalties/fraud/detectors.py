"""Fraud detectors: pure functions from facts to findings (no session, no I/O).

Each returns the ``Finding`` (kind and a reason a person can read) it makes of the facts
it is given, or nothing; ``royalties.fraud.signals`` gathers the facts and records what
is found. Thresholds are ``FraudConfig`` (configuration, see ``api/config.py``), and
every comparison with a threshold is inclusive: reaching it is enough.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


@dataclass(frozen=True)
class FraudConfig:
    signup_window_minutes: int = 24 * 60
    signup_min: int = 5
    signup_share_pct: int = 80
    click_window_minutes: int = 24 * 60
    click_min: int = 50
    burst_minutes: int = 10
    burst_min: int = 5


@dataclass(frozen=True)
class Finding:
    kind: str
    reason: str


def mailbox(email: str | None) -> str | None:
    """The mailbox an address delivers to: lower case, ``+tag`` dropped, Gmail dots dropped."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def second_account(
    *,
    buyer_email: str | None,
    fan_email: str | None,
    purchase_address: str | None,
    fan_signup_address: str | None,
) -> list[Finding]:
    """Signals that the buyer and the level-1 fan are one person."""
    found = []
    buyer_box, fan_box = mailbox(buyer_email), mailbox(fan_email)
    if buyer_box is not None and buyer_box == fan_box:
        found.append(
            Finding("shared_email", f"buyer and level-1 fan share the mailbox {buyer_box}")
        )
    if purchase_address is not None and purchase_address == fan_signup_address:
        found.append(
            Finding(
                "shared_address",
                "the purchase came from the address the level-1 fan signed up from",
            )
        )
    return found


def signup_farm(recent_addresses: Iterable[str | None], config: FraudConfig) -> Finding | None:
    """Most of a sponsor's recent sign-ups share one address."""
    addresses = [a for a in recent_addresses if a]
    if len(addresses) < config.signup_min:
        return None
    _address, count = Counter(addresses).most_common(1)[0]
    if count * 100 >= config.signup_share_pct * len(addresses) and count >= config.signup_min:
        return Finding(
            "signup_farm",
            f"{count} of the last {len(addresses)} sign-ups under this sponsor "
            "came from one address",
        )
    return None


def click_flood(clicks_from_top_address: int, sales: int, config: FraudConfig) -> Finding | None:
    """A link clicked at least ``click_min`` times from one address, and never sold."""
    if sales == 0 and clicks_from_top_address >= config.click_min:
        return Finding(
            "click_flood", f"{clicks_from_top_address} clicks from one address and no sales"
        )
    return None


def storefront_burst(
    first_purchases: Iterable[tuple[str, int]], config: FraudConfig
) -> Finding | None:
    """``first_purchases``: per downline buyer, (storefront id, minutes from sign-up to
    first purchase). Flags when enough of them bought, all through one storefront, all
    within ``burst_minutes`` of signing up."""
    rows = list(first_purchases)
    if len(rows) < config.burst_min:
        return None
    storefronts = {storefront for storefront, _ in rows}
    if len(storefronts) == 1 and all(minutes <= config.burst_minutes for _, minutes in rows):
        return Finding(
            "storefront_burst",
            f"all {len(rows)} downline buyers bought through one storefront within "
            f"{config.burst_minutes} minutes of signing up",
        )
    return None
