"""The arithmetic of one sale and of its refunds (SPEC sections 3, 4, 5 and 9).

Pure functions: no session, no I/O, integers only.

- Level 1 is the fan whose share link brought the buyer, else the buyer's sponsor; a
  buyer's own link (a self-referral) is ignored, so level 1 falls back to the sponsor.
- The influence chain is the level-1 fan followed by its upline, cut to the plan's
  number of levels. Positions held by the buyer pay nothing and do not shift.
- The reward at level L is ``floor(amount * rate_L / 10000)``; the fee is floored the
  same way; the artist gets the rest, so ``artist_share + rewards + fee == amount``.
- Refunds are cumulative and exact: once refunds total R of amount A, each part p
  (reward or fee) has had ``floor(p * R / A)`` reversed; a refund reverses the increase
  of that figure, and the artist's reversal is the refund minus the other reversals.
  A full refund therefore reverses every part exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from royalties.money import prorate, share_bps

K = TypeVar("K")


@dataclass(frozen=True)
class RewardLine:
    level: int
    fan_id: str
    amount: int


@dataclass(frozen=True)
class Split:
    rewards: tuple[RewardLine, ...]
    fee: int
    artist_share: int

    @property
    def total_rewards(self) -> int:
        return sum(r.amount for r in self.rewards)


# How a sale was attributed, as its receipt says: through a share link, through the
# buyer's sponsor, or to nobody (a direct sale).
LINK, SPONSOR, DIRECT = "link", "sponsor", "direct"


def level_one(link_owner: str | None, buyer_id: str, buyer_sponsor: str | None) -> str | None:
    """Who is level 1 of a sale (SPEC section 3): the owner of the share link used,
    unless that is the buyer, else the buyer's sponsor; None for a direct sale."""
    if link_owner is not None and link_owner != buyer_id:
        return link_owner
    return buyer_sponsor


def how_attributed(level1: str | None, link_owner: str | None) -> str:
    """``link`` when level 1 is the owner of the share link used, ``sponsor`` when it is
    the buyer's sponsor, ``direct`` when nobody brought the buyer."""
    if level1 is None:
        return DIRECT
    return LINK if level1 == link_owner else SPONSOR


def influence_chain(level1: str | None, upline_of_level1: Sequence[str], levels: int) -> list[str]:
    """``[level1, sponsor of level1, ...]`` cut to ``levels``; empty for a direct sale."""
    if level1 is None:
        return []
    return [level1, *upline_of_level1][:levels]


def split_sale(
    amount: int, rates_bps: Sequence[int], chain: Sequence[str], buyer_id: str, fee_bps: int = 0
) -> Split:
    """Rewards per level, the platform fee and the artist's share of one sale."""
    rewards = []
    for level, (fan_id, rate) in enumerate(zip(chain, rates_bps, strict=False), start=1):
        if fan_id == buyer_id:
            continue  # a fan never earns on its own purchase; the share stays with the artist
        reward = share_bps(amount, rate)
        if reward > 0:
            rewards.append(RewardLine(level, fan_id, reward))
    fee = share_bps(amount, fee_bps)
    artist_share = amount - sum(r.amount for r in rewards) - fee
    if artist_share < 0:
        raise ValueError("rates plus fee exceed the whole sale")
    return Split(tuple(rewards), fee, artist_share)


@dataclass(frozen=True)
class Reversal(Generic[K]):
    parts: dict[K, int]
    artist: int


def reverse(parts: Mapping[K, int], amount: int, refunded_before: int, refund: int) -> Reversal[K]:
    """What a refund of ``refund`` reverses, given ``refunded_before`` already refunded.

    ``parts`` are the non-artist shares (rewards by key, and the fee); the artist's
    reversal absorbs the rounding so that the reversals sum to the refund exactly.
    """
    if not 0 < refund <= amount - refunded_before:
        raise ValueError("refund must be positive and within what is left")
    after = refunded_before + refund
    reversed_parts = {
        key: prorate(part, after, amount) - prorate(part, refunded_before, amount)
        for key, part in parts.items()
    }
    return Reversal(reversed_parts, refund - sum(reversed_parts.values()))
