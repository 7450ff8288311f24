"""A reward's whole life, in one place (SPEC sections 4 and 5).

A reward row has three columns of state, and only this module reads them:

- ``state``: ``pending`` (in the fan's ``fan_pending`` account, during the plan's hold)
  or ``available`` (moved to ``fan_available`` once the hold passed; paid out from
  there). Moving on is a ledger transaction, once.
- ``review_state``: ``None`` (never flagged), ``held`` (a fraud signal held it: it stays
  ``pending`` whatever the hold, and never matures by itself), ``approved`` (released:
  it goes on as if never held) or ``rejected`` (its money went back to the artist; it
  counts for nothing).
- ``reversed_amount``: what refunds took back from it, never more than its amount.

What a person sees follows from those three: a reward *shows* as ``held`` or
``rejected`` while reviewed so, as ``reversed`` once refunds took all of it, else as its
``state``; and it *counts* ``amount - reversed_amount``, or nothing when rejected
(``counted``, ``counted_reversed``). Balances, statements, insights, the dashboard and
the API all read through these, so they can never disagree.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import case
from sqlalchemy.sql.elements import ColumnElement

from royalties.models import Reward

PENDING, AVAILABLE = "pending", "available"
HELD, APPROVED, REJECTED = "held", "approved", "rejected"
REVERSED = "reversed"
# Every state a person may see, in the order a reward's life goes through them.
SHOWN_STATES = (PENDING, HELD, AVAILABLE, REVERSED, REJECTED)


class _RewardRow(Protocol):
    amount: int
    reversed_amount: int
    state: str
    review_state: str | None


def shown_state(reward: _RewardRow) -> str:
    """The one word a fan or an admin sees for a reward."""
    if reward.review_state in (HELD, REJECTED):
        return str(reward.review_state)
    if reward.reversed_amount == reward.amount:
        return REVERSED
    return reward.state


def counted(reward: Any = Reward) -> ColumnElement[Any]:
    """SQL: what a reward booked for its fan (nothing once rejected). ``reward``: the
    Reward entity or an alias of it."""
    return case((reward.review_state == REJECTED, 0), else_=reward.amount)


def counted_reversed(reward: Any = Reward) -> ColumnElement[Any]:
    """SQL: what refunds took back from what it booked (nothing once rejected: the
    refund took it from the artist, who had the money back)."""
    return case((reward.review_state == REJECTED, 0), else_=reward.reversed_amount)


def counted_net(reward: Any = Reward) -> ColumnElement[Any]:
    """SQL: what a reward is worth to its fan now: booked minus reversed."""
    return counted(reward) - counted_reversed(reward)
