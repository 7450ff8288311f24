"""The fraud detectors as pure functions: what each finds, what it lets pass, and where
each threshold starts counting (reaching a threshold is enough)."""

from __future__ import annotations

import pytest

from royalties.fraud.detectors import (
    FraudConfig,
    click_flood,
    mailbox,
    second_account,
    signup_farm,
    storefront_burst,
)

# -- mailbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "box"),
    [
        ("Ann.Smith@Example.com", "ann.smith@example.com"),
        ("  ann@example.com ", "ann@example.com"),
        ("ann+deals@example.com", "ann@example.com"),
        ("ann+a+b@example.com", "ann@example.com"),
        ("a.n.n+x@gmail.com", "ann@gmail.com"),
        ("A.NN@GoogleMail.com", "ann@gmail.com"),
        ('"odd@local"@example.com', '"odd@local"@example.com'),
    ],
)
def test_a_mailbox_folds_case_plus_tags_and_gmail_dots(address, box):
    assert mailbox(address) == box


def test_dots_are_kept_outside_gmail():
    assert mailbox("ann.smith@example.com") != mailbox("annsmith@example.com")


@pytest.mark.parametrize("address", [None, "", "not-an-address"])
def test_no_address_has_no_mailbox(address):
    assert mailbox(address) is None


# -- second_account ---------------------------------------------------------------------


def facts(**overrides):
    base = {
        "buyer_email": "bob@example.com",
        "fan_email": "ann@example.com",
        "purchase_address": "hash-1",
        "fan_signup_address": "hash-2",
    }
    return {**base, **overrides}


def test_a_buyer_with_the_fans_mailbox_is_a_second_account():
    found = second_account(
        **facts(buyer_email="A.N.N+shop@googlemail.com", fan_email="ann@gmail.com")
    )
    assert [f.kind for f in found] == ["shared_email"]
    assert "ann@gmail.com" in found[0].reason


def test_a_purchase_from_the_fans_signup_address_is_a_second_account():
    found = second_account(**facts(purchase_address="hash-2"))
    assert [f.kind for f in found] == ["shared_address"]


def test_both_findings_are_reported_together():
    found = second_account(**facts(buyer_email="ann@example.com", purchase_address="hash-2"))
    assert [f.kind for f in found] == ["shared_email", "shared_address"]


def test_different_mailboxes_and_addresses_find_nothing():
    assert second_account(**facts()) == []


def test_unknown_emails_or_addresses_never_match_each_other():
    assert (
        second_account(
            buyer_email=None, fan_email=None, purchase_address=None, fan_signup_address=None
        )
        == []
    )
    assert second_account(**facts(buyer_email="", fan_email="")) == []


# -- signup_farm ------------------------------------------------------------------------

FARM = FraudConfig(signup_min=5, signup_share_pct=80)


def test_sign_ups_all_from_one_address_at_the_minimum_are_a_farm():
    found = signup_farm(["a"] * 5, FARM)
    assert found is not None and found.kind == "signup_farm"
    assert "5 of the last 5" in found.reason


def test_one_sign_up_fewer_than_the_minimum_is_not_a_farm():
    assert signup_farm(["a"] * 4, FARM) is None


def test_a_share_exactly_at_the_threshold_is_a_farm_and_just_below_it_is_not():
    assert signup_farm(["a"] * 8 + ["b", "c"], FARM) is not None  # 80 %
    assert signup_farm(["a"] * 7 + ["b", "c"], FARM) is None  # 77 %


def test_a_high_share_of_too_few_sign_ups_from_one_address_is_not_a_farm():
    lenient = FraudConfig(signup_min=5, signup_share_pct=50)
    assert signup_farm(["a"] * 4 + ["b"] * 4, lenient) is None  # 50 %, but only 4 from "a"
    assert signup_farm(["a"] * 5 + ["b"] * 5, lenient) is not None


def test_sign_ups_without_a_known_address_are_not_counted():
    assert signup_farm(["a"] * 4 + [None, None, None], FARM) is None
    assert signup_farm(iter(["a"] * 5 + [None] * 20), FARM) is not None


def test_no_sign_ups_are_not_a_farm():
    assert signup_farm([], FARM) is None


# -- click_flood ------------------------------------------------------------------------

CLICKS = FraudConfig(click_min=50)


def test_clicks_from_one_address_at_the_minimum_and_no_sales_are_a_flood():
    found = click_flood(50, 0, CLICKS)
    assert found is not None and found.kind == "click_flood"
    assert "50 clicks" in found.reason


def test_one_click_fewer_than_the_minimum_is_not_a_flood():
    assert click_flood(49, 0, CLICKS) is None


def test_a_link_that_sold_once_is_not_a_flood_however_often_it_was_clicked():
    assert click_flood(10_000, 1, CLICKS) is None


# -- storefront_burst -------------------------------------------------------------------

BURST = FraudConfig(burst_min=3, burst_minutes=10)


def test_enough_buyers_through_one_storefront_right_after_sign_up_are_a_burst():
    found = storefront_burst([("sf_1", 0), ("sf_1", 3), ("sf_1", 10)], BURST)
    assert found is not None and found.kind == "storefront_burst"
    assert "all 3 downline buyers" in found.reason and "10 minutes" in found.reason


def test_one_buyer_a_minute_past_the_window_ends_the_burst():
    assert storefront_burst([("sf_1", 0), ("sf_1", 3), ("sf_1", 11)], BURST) is None


def test_one_buyer_fewer_than_the_minimum_is_not_a_burst():
    assert storefront_burst([("sf_1", 0), ("sf_1", 1)], BURST) is None


def test_buyers_through_two_storefronts_are_not_a_burst():
    assert storefront_burst([("sf_1", 0), ("sf_1", 1), ("sf_2", 2)], BURST) is None


def test_the_buyers_may_come_as_any_iterable():
    assert storefront_burst((("sf_1", m) for m in range(3)), BURST) is not None


def test_the_default_thresholds_are_the_documented_ones():
    assert FraudConfig() == FraudConfig(
        signup_window_minutes=1440,
        signup_min=5,
        signup_share_pct=80,
        click_window_minutes=1440,
        click_min=50,
        burst_minutes=10,
        burst_min=5,
    )
