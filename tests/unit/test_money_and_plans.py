"""Pure rules: money is integer minor units; plans obey SPEC section 4."""

from __future__ import annotations

from decimal import Decimal

import pytest

from royalties.errors import MoneyError, PlanError
from royalties.money import MAX_AMOUNT, check_amount, normalize_currency, prorate, share_bps
from royalties.plans import validate_plan


@pytest.mark.parametrize(
    "bad", [1.0, 19.99, "100", Decimal("1"), True, None, 0, -5, MAX_AMOUNT + 1]
)
def test_amounts_must_be_positive_integers(bad):
    with pytest.raises(MoneyError):
        check_amount(bad)


def test_currencies_are_iso_codes_returned_upper_case():
    assert normalize_currency("usd") == "USD"
    for bad in ("US", "usdd", "XXY", 840, None):
        with pytest.raises(MoneyError):
            normalize_currency(bad)


def test_shares_floor_exactly():
    assert share_bps(1999, 500) == 99 and share_bps(1999, 25) == 4
    assert prorate(99, 1000, 1999) == 49
    assert share_bps(MAX_AMOUNT, 5000) == MAX_AMOUNT // 2


@pytest.mark.parametrize(
    ("rates", "hold"),
    [
        ([], 30),
        ([1] * 6, 30),
        ([-1], 30),
        ([2501, 2500], 30),
        ([1.5], 30),
        ([True], 30),
        ([100], -1),
        ([100], 366),
        ([100], 1.0),
    ],
)
def test_invalid_plans_are_refused(rates, hold):
    with pytest.raises(PlanError):
        validate_plan(rates, hold)


def test_valid_plans_pass_through():
    assert validate_plan([2500, 2500], 0) == ([2500, 2500], 0)
    assert validate_plan([0], 365) == ([0], 365)


def test_id_and_code_shapes_refuse_a_trailing_newline():
    from royalties.ids import looks_like_id, new_id
    from royalties.services.links import looks_like_code

    fan_id = new_id("fan")
    assert looks_like_id(fan_id) and not looks_like_id(fan_id + "\n")
    assert looks_like_code("abcdefghjk") and not looks_like_code("abcdefghjk\n")


def test_a_plan_reads_in_words_level_by_level_then_the_hold():
    from royalties.plans import in_words, percent

    assert [percent(b) for b in (500, 250, 25, 5, 0, 5000)] == [
        "5%",
        "2.5%",
        "0.25%",
        "0.05%",
        "0%",
        "50%",
    ]
    assert in_words([500, 200, 0, 50], 30) == [
        "5% of every sale you bring in with your link",
        "2% of every sale a fan you brought in brings in",
        "0.5% of every sale a fan three steps below you brings in",
        "Rewards become available 30 days after the sale (the refund window), then they "
        "are paid out.",
    ]
    assert in_words([100], 1)[-1].startswith("Rewards become available 1 day after")
    assert (
        in_words([100], 0)[-1]
        == "Rewards are available at once and paid out in the next payout run."
    )
