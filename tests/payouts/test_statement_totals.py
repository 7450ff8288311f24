"""A fan's statement explains every cent through sales, refunds, payouts, failed and
reversed transfers: its totals always equal the balance endpoint's figures."""

from __future__ import annotations

from collections import defaultdict

from api.dev.fake_stripe import make_event
from tests.helpers import ledger_is_sound, refund


def statement(shop, fan):
    return shop.api.ok("GET", f"/v1/fans/{fan.id}/statement", fan)


def assert_explained(shop, fan):
    """Totals equal the balance endpoint, and the lines add up to the totals."""
    body = statement(shop, fan)
    balances = shop.api.ok("GET", f"/v1/fans/{fan.id}/balance", fan)["balances"]
    assert body["totals"] == balances
    summed = defaultdict(lambda: {"pending": 0, "available": 0, "paid": 0})
    for line in body["lines"]:
        for bucket in ("pending", "available", "paid"):
            summed[line["currency"]][bucket] += line[bucket]
        assert line["amount"] == line["pending"] + line["available"] + line["paid"]
    assert [{"currency": c, **v} for c, v in sorted(summed.items())] == balances
    return body


def test_statement_totals_equal_the_balance_after_sales_refunds_and_a_payout(shop):
    fan = shop.api.fan()
    first = shop.earn(fan, 3000)  # +1500
    second = shop.earn(fan, 2000)  # +1000
    refund(shop.api, shop.storefront, second["id"], 500)  # -250
    shop.connect(fan)
    payout = shop.run()["payouts"][0]
    assert payout["amount"] == 2250 and payout["state"] == "paid"
    refund(shop.api, shop.storefront, first["id"], 3000)  # after the payout: a debt of 1500
    assert shop.balance(fan) == (0, -1500, 2250)
    body = assert_explained(shop, fan)
    kinds = [(line["kind"], line["amount"]) for line in body["lines"]]
    assert kinds == [
        ("reward", 1500),
        ("reward", 1000),
        ("reversal", -250),
        ("payout", -2250),
        ("payout_paid", 2250),
        ("reversal", -1500),
    ]
    paid = [line for line in body["lines"] if line["kind"].startswith("payout")]
    assert {line["payout_id"] for line in paid} == {payout["id"]}
    assert {line["state"] for line in paid} == {"paid"}
    assert body["lines"][-1]["state"] == "reversed" and body["lines"][-1]["available"] == -1500
    ledger_is_sound(shop.api.session)


def test_a_failed_payout_and_a_reversed_transfer_are_explained_too(shop):
    fan = shop.api.fan()
    shop.earn(fan, 4000)  # +2000
    shop.connect(fan)
    shop.fake.fail_next("transfers", 400)
    failed = shop.run()["payouts"][0]
    assert failed["state"] == "failed"
    paid = shop.run()["payouts"][0]
    shop.fake.reverse_transfer(paid["stripe_transfer_id"], amount=800)
    transfer = next(t for t in shop.fake.transfers if t["id"] == paid["stripe_transfer_id"])
    assert shop.webhook(make_event("transfer.reversed", transfer)).status_code == 200
    assert shop.balance(fan) == (0, 800, 1200)
    body = assert_explained(shop, fan)
    assert [(line["kind"], line["amount"]) for line in body["lines"]] == [
        ("reward", 2000),
        ("payout", -2000),
        ("payout_failed", 2000),
        ("payout", -2000),
        ("payout_paid", 2000),
        ("payout_reversed", 0),
    ]
    reversal = body["lines"][-1]
    assert (reversal["available"], reversal["paid"]) == (800, -800)
