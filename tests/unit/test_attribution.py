"""The arithmetic of SPEC section 9, and the refund rules, as pure functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from royalties.attribution import influence_chain, level_one, reverse, split_sale
from royalties.money import MAX_AMOUNT

PLAN = [500, 200, 100, 50, 25]
CHAIN = ["F6", "F5", "F4", "F3", "F2"]


def test_the_worked_example_pays_five_levels_to_the_cent():
    split = split_sale(1999, PLAN, CHAIN, buyer_id="B")
    assert [(r.level, r.fan_id, r.amount) for r in split.rewards] == [
        (1, "F6", 99),
        (2, "F5", 39),
        (3, "F4", 19),
        (4, "F3", 9),
        (5, "F2", 4),
    ]
    assert split.artist_share == 1829 and split.fee == 0


def test_the_worked_example_refunds_reverse_exactly():
    parts = {r.level: r.amount for r in split_sale(1999, PLAN, CHAIN, "B").rewards}
    first = reverse(parts, 1999, 0, 1000)
    assert first.parts == {1: 49, 2: 19, 3: 9, 4: 4, 5: 2} and first.artist == 917
    second = reverse(parts, 1999, 1000, 999)
    assert second.parts == {1: 50, 2: 20, 3: 10, 4: 5, 5: 2} and second.artist == 912


def test_level_one_is_the_link_owner_when_a_link_brought_the_buyer():
    assert level_one("ann", "buyer", "bob") == "ann"
    assert level_one("ann", "buyer", None) == "ann"


def test_level_one_is_the_buyer_s_sponsor_without_a_link():
    assert level_one(None, "buyer", "bob") == "bob"


def test_a_sale_through_the_buyer_s_own_link_falls_back_to_the_sponsor():
    assert level_one("buyer", "buyer", "bob") == "bob"
    assert level_one("buyer", "buyer", None) is None


def test_a_sale_with_no_link_and_no_sponsor_is_direct():
    assert level_one(None, "buyer", None) is None


def test_the_chain_is_cut_to_the_plan_and_level_six_earns_nothing():
    assert influence_chain("F6", ["F5", "F4", "F3", "F2", "F1"], 5) == CHAIN
    assert influence_chain("F6", ["F5"], 5) == ["F6", "F5"]
    assert influence_chain(None, [], 5) == []


def test_a_buyer_inside_the_chain_is_skipped_without_shifting():
    split = split_sale(10_000, PLAN, ["F6", "B", "F4"], buyer_id="B")
    assert [(r.level, r.fan_id) for r in split.rewards] == [(1, "F6"), (3, "F4")]
    assert split.artist_share == 10_000 - 500 - 100


def test_the_fee_is_floored_and_the_artist_takes_the_rest():
    split = split_sale(1999, PLAN, CHAIN, "B", fee_bps=250)
    assert split.fee == 49 and split.artist_share == 1999 - 170 - 49


@given(
    amount=st.integers(1, MAX_AMOUNT),
    rates=st.lists(st.integers(0, 1000), min_size=1, max_size=5),
    fee_bps=st.integers(0, 5000),
    refunds=st.lists(st.integers(1, 10**6), max_size=6),
)
def test_splits_and_refund_sequences_always_add_up(amount, rates, fee_bps, refunds):
    split = split_sale(amount, rates, ["a", "b", "c", "d", "e"], "z", fee_bps)
    assert split.artist_share + split.total_rewards + split.fee == amount
    parts = {r.level: r.amount for r in split.rewards} | {"fee": split.fee}
    refunded, totals, artist = 0, dict.fromkeys(parts, 0), 0
    for r in [*refunds, amount]:  # the last one refunds whatever is left
        r = min(r, amount - refunded)
        if r == 0:
            break
        rev = reverse(parts, amount, refunded, r)
        assert sum(rev.parts.values()) + rev.artist == r
        refunded += r
        for key, value in rev.parts.items():
            totals[key] += value
            assert 0 <= totals[key] <= parts[key]
        artist += rev.artist
    assert refunded == amount
    assert totals == parts and artist == split.artist_share
