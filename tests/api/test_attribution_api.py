"""Every rule of SPEC section 3, each its own test, through the purchase endpoint."""

from __future__ import annotations

import pytest

from royalties.models import Fan
from tests.helpers import buy, ledger_is_sound, share


@pytest.fixture
def world(api):
    artist, shop = api.artist("Ada"), api.storefront()
    item = api.content(artist)
    return artist, shop, item


def levels(sale):
    return [(r["level"], r["fan_id"]) for r in sale["rewards"]]


def test_level_one_is_the_link_owner_then_the_upline(api, world):
    _, shop, item = world
    a, b, c = api.chain(3)
    sale = buy(api, shop, item, {"email": "x@example.com"}, share_code=share(api, c, item["id"]))
    assert levels(sale) == [(1, c.id), (2, b.id), (3, a.id)]  # a chain shorter than five


def test_a_link_for_another_artists_content_falls_back_to_the_buyers_sponsor(api, world):
    _, shop, item = world
    other_item = api.content(api.artist("Bo"))
    sponsor, stranger = api.fan(), api.fan()
    buyer = api.fan(ref=sponsor.id)
    code = share(api, stranger, other_item["id"])
    sale = buy(api, shop, item, {"fan_id": buyer.id}, share_code=code)
    assert levels(sale) == [(1, sponsor.id)]


def test_a_disabled_link_attributes_nothing(api, world):
    _, shop, item = world
    sharer = api.fan()
    code = share(api, sharer, item["id"])
    api.ok("POST", f"/v1/share-links/{code}/disable", sharer)
    sale = buy(api, shop, item, {"email": "new@example.com"}, share_code=code)
    assert sale["rewards"] == [] and sale["artist_share"] == item["price"]
    assert api.session.get(Fan, sale["buyer_id"]).sponsor_id is None


def test_an_unknown_share_code_falls_back_like_no_link(api, world):
    _, shop, item = world
    sponsor = api.fan()
    buyer = api.fan(ref=sponsor.id)
    sale = buy(api, shop, item, {"fan_id": buyer.id}, share_code="nosuchcode")
    assert levels(sale) == [(1, sponsor.id)]


def test_a_buyers_own_link_is_ignored_and_level_one_is_its_sponsor(api, world):
    _, shop, item = world
    sponsor = api.fan()
    buyer = api.fan(ref=sponsor.id)
    sale = buy(api, shop, item, {"fan_id": buyer.id}, share_code=share(api, buyer, item["id"]))
    assert levels(sale) == [(1, sponsor.id)]


def test_a_buyer_inside_the_chain_earns_nothing_and_positions_do_not_shift(api, world):
    _, shop, item = world
    top, buyer, mid = api.chain(3)  # buyer sponsored mid, mid shares
    sale = buy(api, shop, item, {"fan_id": buyer.id}, share_code=share(api, mid, item["id"]))
    assert levels(sale) == [(1, mid.id), (3, top.id)]
    assert sale["artist_share"] == 1999 - 99 - 19


def test_no_sponsor_and_no_link_is_a_direct_sale(api, world):
    _, shop, item = world
    sale = buy(api, shop, item, {"external_id": "cust-1"})
    assert sale["rewards"] == [] and sale["artist_share"] == 1999


def test_level_six_earns_nothing(api, world):
    _, shop, item = world
    fans = api.chain(7)
    sale = buy(
        api, shop, item, {"email": "z@example.com"}, share_code=share(api, fans[-1], item["id"])
    )
    assert [f for _, f in levels(sale)] == [f.id for f in reversed(fans[2:])]


def test_an_existing_fan_without_sponsor_gets_the_link_owner_as_sponsor(api, world):
    _, shop, item = world
    sharer, buyer = api.fan(), api.fan()
    buy(api, shop, item, {"fan_id": buyer.id}, share_code=share(api, sharer, item["id"]))
    assert api.session.get(Fan, buyer.id).sponsor_id == sharer.id


def test_a_sponsor_is_never_set_where_it_would_close_a_loop(api, world):
    _, shop, item = world
    root, child = api.chain(2)
    sale = buy(api, shop, item, {"fan_id": root.id}, share_code=share(api, child, item["id"]))
    assert levels(sale) == [(1, child.id)]  # root is level 2: its own purchase, skipped
    assert api.session.get(Fan, root.id).sponsor_id is None


def test_a_sponsor_is_never_replaced_by_a_later_link(api, world):
    _, shop, item = world
    first, second = api.fan(), api.fan()
    buyer = api.fan(ref=first.id)
    sale = buy(api, shop, item, {"fan_id": buyer.id}, share_code=share(api, second, item["id"]))
    assert levels(sale) == [(1, second.id)]
    assert api.session.get(Fan, buyer.id).sponsor_id == first.id


def test_buyers_are_found_by_email_case_insensitively_and_by_external_id_per_storefront(api, world):
    _, shop, item = world
    other_shop = api.storefront("Other")
    ann = api.fan(email="ann@example.com")
    assert buy(api, shop, item, {"email": "ANN@Example.com"})["buyer_id"] == ann.id
    one = buy(api, shop, item, {"external_id": "c-9"})["buyer_id"]
    assert buy(api, shop, item, {"external_id": "c-9"})["buyer_id"] == one
    assert buy(api, other_shop, item, {"external_id": "c-9"})["buyer_id"] != one


def test_the_chain_and_plan_version_are_frozen_on_the_purchase(api, world):
    artist, shop, item = world
    _a, b = api.chain(2)
    sale = buy(api, shop, item, {"email": "q@example.com"}, share_code=share(api, b, item["id"]))
    api.ok("PUT", f"/v1/artists/{artist.id}/reward-plan", artist, {"level_rates_bps": [1000]})
    again = api.ok("GET", f"/v1/purchases/{sale['id']}", shop)
    assert again["rewards"] == sale["rewards"] and again["plan_version"] == 1
    later = buy(api, shop, item, {"email": "q@example.com"}, share_code=share(api, b, item["id"]))
    assert later["plan_version"] == 2 and [r["amount"] for r in later["rewards"]] == [199]
    ledger_is_sound(api.session)


def test_a_content_plan_overrides_the_artist_plan_for_its_sales(api, world):
    artist, shop, item = world
    api.ok("PUT", f"/v1/content/{item['id']}/reward-plan", artist, {"level_rates_bps": [0, 1000]})
    a, b = api.chain(2)
    sale = buy(api, shop, item, {"email": "p@example.com"}, share_code=share(api, b, item["id"]))
    assert levels(sale) == [(2, a.id)] and sale["rewards"][0]["amount"] == 199


def test_the_receipt_says_how_a_sale_was_attributed_and_flags_a_code_that_did_nothing(api, world):
    _, shop, item = world
    sponsor, sharer = api.fan(), api.fan()
    buyer = api.fan(ref=sponsor.id)
    through_link = buy(
        api, shop, item, {"email": "l@x.io"}, share_code=share(api, sharer, item["id"])
    )
    assert (through_link["attribution"], through_link["warnings"]) == ("link", [])
    through_sponsor = buy(api, shop, item, {"fan_id": buyer.id})
    assert (through_sponsor["attribution"], through_sponsor["warnings"]) == ("sponsor", [])
    unknown = buy(api, shop, item, {"email": "u@x.io"}, share_code="nosuchcode")
    assert unknown["attribution"] == "direct" and unknown["rewards"] == []
    [warning] = unknown["warnings"]
    assert "'nosuchcode'" in warning and "not an active link" in warning
    # the same facts read back later (the warning belongs to the answer, not the sale)
    again = api.ok("GET", f"/v1/purchases/{through_link['id']}", shop)
    assert again["attribution"] == "link"
    assert api.ok("GET", f"/v1/purchases/{through_sponsor['id']}", shop)["attribution"] == (
        "sponsor"
    )
    assert api.ok("GET", f"/v1/purchases/{unknown['id']}", shop)["attribution"] == "direct"


def test_a_code_of_another_artist_s_content_is_flagged_and_the_sponsor_credited(api, world):
    _, shop, item = world
    other_item = api.content(api.artist("Cy"))
    sponsor, stranger = api.fan(), api.fan()
    buyer = api.fan(ref=sponsor.id)
    sale = buy(
        api, shop, item, {"fan_id": buyer.id}, share_code=share(api, stranger, other_item["id"])
    )
    assert sale["attribution"] == "sponsor" and levels(sale) == [(1, sponsor.id)]
    assert len(sale["warnings"]) == 1
