"""Holds on a real database, with an explicit clock (SPEC sections 4 and 5).

A reward is ``pending`` for its plan's ``hold_days``, then ``available``; the move is a
ledger transaction, posted once. Refunds take from ``pending`` while the reward is on
hold and from ``available`` afterwards, possibly below zero, and later rewards pay that
debt off. The setting is the worked example of SPEC section 9 (plan
``[500, 200, 100, 50, 25]``, 30 hold days, a 1999 sale through F6's link).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from royalties import ledger
from royalties import rewards as holds
from royalties.models import LedgerEntry, LedgerTransaction, Reward
from royalties.services import balances, purchases, refunds
from royalties.services.purchases import BuyerRef
from tests.integration.conftest import (
    Builder,
    Item,
    balances_of,
    earned_from_rewards,
    ledger_clean,
    mature_count,
    unique,
)

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
HOLD = timedelta(days=30)
REWARDS = (99, 39, 19, 9, 4)  # F6, F5, F4, F3, F2 on a 1999 sale


@dataclass
class Example:
    storefront: str
    item: Item
    fans: list[str]  # F1 .. F6
    code: str

    @property
    def earners(self) -> list[str]:
        """F6, F5, F4, F3, F2: the fans levels 1 to 5 pay, in level order."""
        return self.fans[:0:-1]


@pytest.fixture
def example(build: Builder) -> Example:
    artist = build.artist()
    item = build.content(artist, price=1999)
    fans = build.chain(6)
    return Example(build.storefront(), item, fans, build.link(fans[-1], item.id))


def sell(session, ex: Example, *, at: datetime, amount: int = 1999) -> dict:
    return purchases.record_purchase(
        session,
        storefront_id=ex.storefront,
        content_id=ex.item.id,
        amount=amount,
        currency="USD",
        buyer=BuyerRef(email=f"{unique('b')}@example.com"),
        share_code=ex.code,
        now=at,
    )


def give_back(session, ex: Example, purchase_id: str, amount: int, *, at: datetime) -> dict:
    return refunds.refund_purchase(
        session, storefront_id=ex.storefront, purchase_id=purchase_id, amount=amount, now=at
    )


def seen(session, fan_id: str, at: datetime) -> tuple[int, int, int]:
    """What the fan is shown at ``at`` (the read matures what is due)."""
    shown = {b.currency: b for b in balances.fan_balances(session, fan_id, now=at)}
    usd = shown.get("USD")
    return (usd.pending, usd.available, usd.paid) if usd else (0, 0, 0)


def pay_out(session, fan_id: str, amount: int) -> None:
    """What a payout books: the fan's available money moves to paid."""
    ledger.post(
        session,
        kind="payout",
        ref=unique("po"),
        currency="USD",
        lines=[
            ledger.Line("fan_available", fan_id, -amount),
            ledger.Line("fan_paid", fan_id, amount),
        ],
    )
    session.commit()


def test_a_reward_is_pending_until_its_hold_passes_and_available_from_the_boundary_on(
    session, example
):
    sale = sell(session, example, at=T0)
    assert [r["amount"] for r in sale["rewards"]] == list(REWARDS)
    f6 = example.fans[-1]

    assert seen(session, f6, T0) == (99, 0, 0)
    assert seen(session, f6, T0 + HOLD - timedelta(microseconds=1)) == (99, 0, 0)
    assert mature_count(session) == 0
    assert seen(session, f6, T0 + HOLD) == (0, 99, 0)  # exactly at the boundary
    assert seen(session, f6, T0 + HOLD + timedelta(days=400)) == (0, 99, 0)
    for fan, reward in zip(example.earners, REWARDS, strict=True):
        assert seen(session, fan, T0 + HOLD) == (0, reward, 0)
    assert seen(session, example.fans[0], T0 + HOLD) == (0, 0, 0)  # F1 is level 6
    ledger_clean(session)


def test_maturing_twice_posts_one_ledger_transaction(session, example):
    sell(session, example, at=T0)
    assert holds.mature_due(session, now=T0 + HOLD) == 5
    session.commit()
    assert holds.mature_due(session, now=T0 + HOLD) == 0
    assert holds.mature_due(session, now=T0 + HOLD + timedelta(days=1)) == 0
    session.commit()
    for fan, reward in zip(example.earners, REWARDS, strict=True):
        assert seen(session, fan, T0 + HOLD + timedelta(days=2)) == (0, reward, 0)
        assert seen(session, fan, T0 + HOLD + timedelta(days=3)) == (0, reward, 0)
    assert mature_count(session) == 1
    matured = session.scalars(
        select(LedgerEntry.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.kind == "mature", LedgerEntry.amount > 0)
    ).all()
    assert sorted(matured) == sorted(REWARDS)
    ledger_clean(session)


def test_maturing_through_the_balance_read_posts_once_per_reward(session, example):
    sell(session, example, at=T0)
    for fan in example.earners:
        seen(session, fan, T0 + HOLD)
        seen(session, fan, T0 + HOLD)
    per_reward = session.execute(
        select(LedgerEntry.reward_id, func.count(func.distinct(LedgerEntry.transaction_id)))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.kind == "mature")
        .group_by(LedgerEntry.reward_id)
    ).all()
    assert sorted(n for _, n in per_reward) == [1] * 5
    assert mature_count(session) == 5  # one read per fan, each its own transaction


def test_a_partial_refund_while_pending_then_maturing_moves_only_what_is_left(session, example):
    sale = sell(session, example, at=T0)
    back = give_back(session, example, sale["id"], 1000, at=T0 + timedelta(days=1))
    assert [r["amount"] for r in back["reversed"]] == [49, 19, 9, 4, 2]
    left = [99 - 49, 39 - 19, 19 - 9, 9 - 4, 4 - 2]
    for fan, rest in zip(example.earners, left, strict=True):
        assert seen(session, fan, T0 + timedelta(days=2)) == (rest, 0, 0)
    for fan, rest in zip(example.earners, left, strict=True):
        assert seen(session, fan, T0 + HOLD) == (0, rest, 0)
    moved = session.scalars(
        select(LedgerEntry.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.kind == "mature", LedgerEntry.account_id.like("fan_available:%"))
    ).all()
    assert sorted(moved) == sorted(left)
    ledger_clean(session)


def test_a_refund_after_maturing_takes_from_available(session, example):
    sale = sell(session, example, at=T0)
    assert seen(session, example.fans[-1], T0 + HOLD) == (0, 99, 0)
    holds.mature_due(session, now=T0 + HOLD)
    session.commit()
    give_back(session, example, sale["id"], 1000, at=T0 + HOLD + timedelta(days=1))
    for fan, reward, taken in zip(example.earners, REWARDS, [49, 19, 9, 4, 2], strict=True):
        assert balances_of(session, fan) == {"USD": (0, reward - taken, 0)}
    give_back(session, example, sale["id"], 999, at=T0 + HOLD + timedelta(days=2))
    for fan in example.earners:
        assert seen(session, fan, T0 + HOLD + timedelta(days=3)) == (0, 0, 0)
    assert session.scalar(select(func.sum(Reward.reversed_amount))) == sum(REWARDS)
    ledger_clean(session)


def test_a_refund_beyond_what_is_available_leaves_a_debt_that_a_later_reward_pays_off(
    session, example
):
    f6 = example.fans[-1]
    sale = sell(session, example, at=T0)
    assert seen(session, f6, T0 + HOLD) == (0, 99, 0)
    pay_out(session, f6, 99)
    assert seen(session, f6, T0 + HOLD) == (0, 0, 99)

    give_back(session, example, sale["id"], 1999, at=T0 + HOLD + timedelta(days=1))
    assert seen(session, f6, T0 + HOLD + timedelta(days=1)) == (0, -99, 99)  # a debt

    later = T0 + HOLD + timedelta(days=5)
    second = sell(session, example, at=later, amount=2999)  # 5% of 2999 = 149
    assert second["rewards"][0] == {"level": 1, "fan_id": f6, "amount": 149}
    assert seen(session, f6, later) == (149, -99, 99)
    assert seen(session, f6, later + HOLD) == (0, 149 - 99, 99)  # the debt is paid off
    assert earned_from_rewards(session, f6) == {"USD": 149}
    ledger_clean(session)


def test_hold_days_zero_makes_a_reward_available_at_once(session, build, example):
    build.plan(example.item.artist_id, [500, 200, 100, 50, 25], 0)
    sale = sell(session, example, at=T0)
    for fan, reward in zip(example.earners, REWARDS, strict=True):
        assert balances_of(session, fan) == {"USD": (0, reward, 0)}
        assert seen(session, fan, T0) == (0, reward, 0)
    assert mature_count(session) == 0
    assert holds.mature_due(session, now=T0 + HOLD) == 0
    session.commit()
    assert mature_count(session) == 0
    give_back(session, example, sale["id"], 1000, at=T0)
    assert balances_of(session, example.fans[-1]) == {"USD": (0, 50, 0)}
    ledger_clean(session)


def test_only_the_rewards_whose_hold_has_passed_mature(session, example):
    f6 = example.fans[-1]
    sell(session, example, at=T0)
    sell(session, example, at=T0 + timedelta(days=10), amount=2999)  # 149 to F6
    assert seen(session, f6, T0 + HOLD) == (149, 99, 0)
    assert seen(session, f6, T0 + HOLD + timedelta(days=10)) == (0, 248, 0)
    ledger_clean(session)


def test_a_reward_fully_refunded_while_pending_matures_no_money(session, example):
    sale = sell(session, example, at=T0)
    give_back(session, example, sale["id"], 1999, at=T0 + timedelta(days=1))
    for fan in example.earners:
        assert seen(session, fan, T0 + HOLD) == (0, 0, 0)
    assert mature_count(session) == 0
    ledger_clean(session)
