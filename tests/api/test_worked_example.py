"""SPEC section 9, end to end through HTTP, to the cent, including both refunds."""

from __future__ import annotations

from sqlalchemy import select

from royalties.models import Fan
from tests.helpers import buy, ledger_is_sound, refund, share


def balances(api, fan):
    body = api.ok("GET", f"/v1/fans/{fan.id}/balance", fan)
    return {b["currency"]: (b["pending"], b["available"], b["paid"]) for b in body["balances"]}


def test_the_worked_example_ripples_through_five_levels_and_refunds_exactly(api):
    artist, shop = api.artist(), api.storefront()
    item = api.content(artist, price=1999, currency="USD")
    f1, f2, f3, f4, f5, f6 = api.chain(6)
    code = share(api, f6, item["id"])

    sale = buy(api, shop, item, {"email": "b@example.com"}, share_code=code)
    assert [(r["level"], r["fan_id"], r["amount"]) for r in sale["rewards"]] == [
        (1, f6.id, 99),
        (2, f5.id, 39),
        (3, f4.id, 19),
        (4, f3.id, 9),
        (5, f2.id, 4),
    ]
    assert (sale["artist_share"], sale["fee"], sale["plan_version"]) == (1829, 0, 1)
    assert balances(api, f1) == {}
    assert balances(api, f6) == {"USD": (99, 0, 0)}  # 30 hold days: pending
    buyer = api.session.scalars(select(Fan).where(Fan.id == sale["buyer_id"])).one()
    assert buyer.sponsor_id == f6.id and buyer.email == "b@example.com"

    first = refund(api, shop, sale["id"], 1000)
    assert [r["amount"] for r in first["reversed"]] == [49, 19, 9, 4, 2]
    assert first["artist_reversed"] == 917
    second = refund(api, shop, sale["id"], 999)
    assert [r["amount"] for r in second["reversed"]] == [50, 20, 10, 5, 2]
    assert second["artist_reversed"] == 912 and second["refunded_total"] == 1999

    for fan in (f2, f3, f4, f5, f6):
        assert balances(api, fan) == {"USD": (0, 0, 0)}
    rewards = api.ok("GET", f"/v1/fans/{f6.id}/rewards", f6)["items"]
    assert [(r["amount"], r["reversed_amount"], r["state"]) for r in rewards] == [
        (99, 99, "reversed")
    ]
    too_much = refund(api, shop, sale["id"], 1, status=422)
    assert too_much["code"] == "refund_exceeds_remaining"
    ledger_is_sound(api.session)
