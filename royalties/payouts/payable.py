"""Who a payout run pays, and why everyone else with money is not paid.

A fan is payable in a currency when its available balance is at least that currency's
minimum and its connected account can receive transfers (``payouts_enabled`` and the
``transfers`` capability active). Everyone else with an available balance or held
rewards is counted under the first reason of ``NOT_PAID_REASONS`` that applies, so an
operator sees why a run left them out. The survey only reads; a claim re-reads the
balance under its lock, so what it finds here is a plan, not a promise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties import rewards
from royalties.ledger import AccountKind
from royalties.models import Fan, LedgerAccount, LedgerEntry, Reward


@dataclass(frozen=True)
class Minimums:
    """The smallest balance paid out: ``default`` (``MIN_PAYOUT``), or the currency's own
    (``MIN_PAYOUT_<CUR>``, e.g. JPY has no minor unit)."""

    default: int
    per_currency: tuple[tuple[str, int], ...] = ()

    def of(self, currency: str) -> int:
        return dict(self.per_currency).get(currency, self.default)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Minimums:
        """The minimums a configuration sets: ``MIN_PAYOUT`` and
        ``MIN_PAYOUT_BY_CURRENCY`` (the app, the command line and the worker alike)."""
        by_currency = config.get("MIN_PAYOUT_BY_CURRENCY") or {}
        return cls(int(config["MIN_PAYOUT"]), tuple(sorted(by_currency.items())))


@dataclass(frozen=True)
class Candidate:
    fan_id: str
    currency: str
    destination: str
    available: int


# Why a fan with money in a currency is not paid by a run (besides the platform balance,
# which the run itself decides), in the order they are checked.
NOT_PAID_REASONS = {
    "negative_balance": "negative balance (a refund after a payout)",
    "held_for_review": "rewards held for review",
    "under_minimum": "under the minimum",
    "no_account": "no payout account",
    "payouts_off": "payouts not enabled at Stripe",
    "capability_inactive": "transfers capability not active at Stripe",
    "platform_balance_short": "platform balance short",
}


@dataclass
class Survey:
    """Who a run pays (``candidates``) and, for everyone else with money, why not."""

    candidates: list[Candidate]
    not_paid: dict[str, int]  # reason (a key of NOT_PAID_REASONS) -> (fan, currency) pairs


def survey(session: Session, minimums: Minimums) -> Survey:
    """Every fan and currency with an available balance or held rewards: a candidate
    when the balance is at least the currency's minimum and the connected account is
    payable (``payouts_enabled`` and the ``transfers`` capability active), otherwise
    counted under the first reason that applies. One grouped read of the balances.

    Only reads: the caller ends the transaction before any call to Stripe."""
    total = func.sum(LedgerEntry.amount)
    rows = session.execute(
        select(
            LedgerAccount.owner_id,
            LedgerAccount.currency,
            total,
            Fan.stripe_account_id,
            Fan.payouts_enabled,
            Fan.transfers_active,
        )
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(Fan, Fan.id == LedgerAccount.owner_id)
        .where(LedgerAccount.kind == AccountKind.FAN_AVAILABLE)
        .group_by(
            LedgerAccount.owner_id,
            LedgerAccount.currency,
            Fan.stripe_account_id,
            Fan.payouts_enabled,
            Fan.transfers_active,
        )
        .order_by(LedgerAccount.owner_id, LedgerAccount.currency)
    ).all()
    held = {
        (fan_id, currency)
        for fan_id, currency in session.execute(
            select(Reward.fan_id, Reward.currency).where(rewards.is_held()).distinct()
        )
    }
    candidates: list[Candidate] = []
    not_paid: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for fan_id, currency, balance, destination, enabled, transfers in rows:
        available = int(balance or 0)
        seen.add((fan_id, currency))
        reason = _not_paid_reason(
            available,
            minimums.of(currency),
            held=(fan_id, currency) in held,
            destination=destination,
            enabled=enabled,
            transfers=transfers,
        )
        if reason is None:
            candidates.append(Candidate(fan_id, currency, str(destination), available))
        elif reason != "nothing":
            not_paid[reason] = not_paid.get(reason, 0) + 1
    only_held = len(held - seen)  # held rewards, nothing available yet
    if only_held:
        not_paid["held_for_review"] = not_paid.get("held_for_review", 0) + only_held
    return Survey(candidates, not_paid)


def outlook(
    session: Session, fan: Fan, available: dict[str, int], minimums: Minimums
) -> dict[str, str | None]:
    """Per currency the fan has money or held rewards in: the reason the next run would
    not pay it (a key of ``NOT_PAID_REASONS``), or None when it would. The same rule as
    the survey, for one fan (the fan page says it)."""
    held = set(
        session.scalars(
            select(Reward.currency).where(Reward.fan_id == fan.id, rewards.is_held()).distinct()
        )
    )
    out: dict[str, str | None] = {}
    for currency in sorted(set(available) | held):
        reason = _not_paid_reason(
            available.get(currency, 0),
            minimums.of(currency),
            held=currency in held,
            destination=fan.stripe_account_id,
            enabled=fan.payouts_enabled,
            transfers=fan.transfers_active,
        )
        if reason != "nothing":
            out[currency] = reason
    return out


def _not_paid_reason(
    available: int,
    minimum: int,
    *,
    held: bool,
    destination: str | None,
    enabled: bool,
    transfers: bool,
) -> str | None:
    if available < 0:
        return "negative_balance"
    if available < minimum:
        return "held_for_review" if held else ("under_minimum" if available > 0 else "nothing")
    if destination is None:
        return "no_account"
    if not enabled:
        return "payouts_off"
    if not transfers:
        return "capability_inactive"
    return None
