"""Reward plans (SPEC section 4): validation, versioning, and which plan applies.

A plan is 1 to 5 non-negative basis-point rates summing to at most 5000 (50%), and a
hold of 0 to 365 days. Plans are immutable: setting one inserts the next version of
its scope. A content item's own plan, when it has one, overrides its artist's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, func, select
from sqlalchemy.orm import Session

from royalties.errors import PlanError
from royalties.models import RewardPlan
from royalties.models.graph import MAX_DEPTH

DEFAULT_RATES_BPS = (500, 200, 100, 50, 25)
DEFAULT_HOLD_DAYS = 30
MAX_TOTAL_BPS = 5000
MAX_HOLD_DAYS = 365


_WHO = (
    "you bring in with your link",
    "a fan you brought in brings in",
    "a fan two steps below you brings in",
    "a fan three steps below you brings in",
    "a fan four steps below you brings in",
)


def percent(bps: int) -> str:
    """Basis points as a percentage in words: 500 -> "5%", 250 -> "2.5%", 25 -> "0.25%"."""
    whole, part = divmod(bps, 100)
    return f"{whole}.{part:02d}".rstrip("0").rstrip(".") + "%"


def in_words(level_rates_bps: Sequence[int], hold_days: int) -> list[str]:
    """A plan as a fan reads it: one sentence per level that pays, then the hold."""
    lines = [
        f"{percent(rate)} of every sale {who}"
        for rate, who in zip(level_rates_bps, _WHO, strict=False)
        if rate > 0
    ]
    if hold_days:
        lines.append(
            f"Rewards become available {hold_days} day{'s' if hold_days != 1 else ''} "
            "after the sale (the refund window), then they are paid out."
        )
    else:
        lines.append("Rewards are available at once and paid out in the next payout run.")
    return lines


def validate_plan(level_rates_bps: Sequence[object], hold_days: object) -> tuple[list[int], int]:
    """Return the plan as plain ints, or raise PlanError naming the offending field."""
    rates = list(level_rates_bps)
    if not 1 <= len(rates) <= MAX_DEPTH:
        raise PlanError(
            f"a plan has 1 to {MAX_DEPTH} levels",
            fields={"level_rates_bps": [f"give 1 to {MAX_DEPTH} rates, got {len(rates)}"]},
        )
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise PlanError(
                "rates are non-negative integers in basis points",
                fields={"level_rates_bps": [f"{rate!r} is not a non-negative integer"]},
            )
    total = sum(rates)  # type: ignore[arg-type]
    if total > MAX_TOTAL_BPS:
        raise PlanError(
            f"rates sum to {total} bps; at most {MAX_TOTAL_BPS} (50%) may go to fans",
            fields={"level_rates_bps": [f"sum is {total}, the maximum is {MAX_TOTAL_BPS}"]},
        )
    if isinstance(hold_days, bool) or not isinstance(hold_days, int):
        raise PlanError("hold_days is an integer", fields={"hold_days": ["not an integer"]})
    if not 0 <= hold_days <= MAX_HOLD_DAYS:
        raise PlanError(
            f"hold_days is 0 to {MAX_HOLD_DAYS}",
            fields={"hold_days": [f"must be between 0 and {MAX_HOLD_DAYS}"]},
        )
    return [int(r) for r in rates], hold_days  # type: ignore[call-overload]


def artist_scope(artist_id: str) -> str:
    return f"artist:{artist_id}"


def content_scope(content_id: str) -> str:
    return f"content:{content_id}"


def add_plan_version(
    session: Session,
    *,
    artist_id: str,
    content_id: str | None,
    level_rates_bps: Sequence[object],
    hold_days: object,
) -> RewardPlan:
    """Validate and add the next version of the artist's (or content item's) plan."""
    rates, hold = validate_plan(level_rates_bps, hold_days)
    scope = content_scope(content_id) if content_id else artist_scope(artist_id)
    last = session.scalar(select(func.max(RewardPlan.version)).where(RewardPlan.scope == scope))
    plan = RewardPlan(
        scope=scope,
        artist_id=artist_id,
        content_id=content_id,
        version=(last or 0) + 1,
        level_rates_bps=rates,
        hold_days=hold,
    )
    session.add(plan)
    session.flush()
    return plan


def current_plan(session: Session, scope: str) -> RewardPlan | None:
    return session.scalar(select(RewardPlan).where(RewardPlan.id == latest_plan_id(scope)))


def latest_plan_id(scope: Any) -> ScalarSelect[int]:
    """The id of ``scope``'s latest version: a backward scan of the unique (scope,
    version) index that stops at its first row. ``scope`` may be a SQL expression."""
    return (
        select(RewardPlan.id)
        .where(RewardPlan.scope == scope)
        .order_by(RewardPlan.version.desc())
        .limit(1)
        .correlate_except(RewardPlan)  # inside a query joining reward_plans, still its own
        .scalar_subquery()
    )


def effective_plan_id(own_scope: Any, artist_scope: Any) -> ColumnElement[int]:
    """The id of the plan that applies to a sale: the content item's own latest plan if it
    has one, else its artist's latest (two index lookups, whatever the number of plans)."""
    return func.coalesce(latest_plan_id(own_scope), latest_plan_id(artist_scope))


def effective_plan(session: Session, *, artist_id: str, content_id: str) -> RewardPlan:
    """The content item's own latest plan if it has one, else its artist's latest."""
    plan = session.scalar(
        select(RewardPlan).where(
            RewardPlan.id == effective_plan_id(content_scope(content_id), artist_scope(artist_id))
        )
    )
    if plan is None:  # every artist gets version 1 at creation; this is a broken database
        raise PlanError(f"artist {artist_id} has no reward plan")
    return plan
