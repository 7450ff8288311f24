"""Payout runs against a fake Stripe through the real SDK: amounts, skips, failures,
retries with the same idempotency key, and debts from refunds after payout."""

from __future__ import annotations

from tests.helpers import age_last_attempt, ledger_is_sound, refund


def transfers_to(fake, account):
    return [t for t in fake.transfers if t["destination"] == account]


def test_a_run_pays_the_right_fans_the_right_amounts_and_a_second_run_pays_nothing(shop):
    ann, bob = shop.api.fan(), shop.api.fan()
    shop.earn(ann, 3000)  # 1500
    shop.earn(bob, 2400)  # 1200
    acct_ann, acct_bob = shop.connect(ann), shop.connect(bob)
    run = shop.run()
    paid = {p["fan_id"]: (p["amount"], p["state"], p["currency"]) for p in run["payouts"]}
    assert paid == {ann.id: (1500, "paid", "USD"), bob.id: (1200, "paid", "USD")}
    assert [t["amount"] for t in transfers_to(shop.fake, acct_ann)] == [1500]
    assert [t["amount"] for t in transfers_to(shop.fake, acct_bob)] == [1200]
    assert all(t["transfer_group"] == run["id"] for t in shop.fake.transfers)
    assert shop.balance(ann) == (0, 0, 1500)
    assert shop.run()["payouts"] == []
    assert len(shop.fake.transfers) == 2
    payouts = shop.api.ok("GET", "/v1/payouts", shop.api.admin)["items"]
    assert {p["stripe_transfer_id"] for p in payouts} == {t["id"] for t in shop.fake.transfers}
    ledger_is_sound(shop.api.session)


def test_fans_under_the_minimum_disabled_or_unconnected_are_skipped(shop):
    small, disabled, unconnected = shop.api.fan(), shop.api.fan(), shop.api.fan()
    shop.earn(small, 1998)  # 999: just under the minimum
    shop.earn(disabled, 4000)
    shop.earn(unconnected, 4000)
    shop.connect(small)
    shop.connect(disabled, enabled=False)
    assert shop.run()["payouts"] == []
    assert shop.fake.transfers == []
    assert shop.balance(small) == (0, 999, 0)


def test_a_negative_balance_is_never_paid_and_later_rewards_pay_the_debt_first(shop):
    fan = shop.api.fan()
    sale = shop.earn(fan, 3000)
    shop.connect(fan)
    shop.run()
    assert shop.balance(fan) == (0, 0, 1500)
    refund(shop.api, shop.storefront, sale["id"], 3000)  # after the payout: debt of 1500
    assert shop.balance(fan) == (0, -1500, 1500)
    assert shop.run()["payouts"] == []
    shop.earn(fan, 4000, buyer="again@x.io")  # +2000: pays the 1500 debt, 500 left
    assert shop.balance(fan) == (0, 500, 1500)
    assert shop.run()["payouts"] == []  # 500 is under the minimum
    shop.earn(fan, 2000, buyer="third@x.io")  # +1000 -> 1500
    run = shop.run()
    assert [p["amount"] for p in run["payouts"]] == [1500]
    ledger_is_sound(shop.api.session)


def test_a_stripe_5xx_leaves_the_payout_submitted_and_a_later_run_pays_it_under_a_new_key(shop):
    """Stripe saves a 500 under its key and replays it for the key's life: a retry soon
    after reuses the key (the first request might still be running) and gets the 500
    again; once the attempt is old enough, no transfer found, a new key pays it."""
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_next("transfers", 500)
    first = shop.run()["payouts"]
    assert [(p["state"], p["stripe_transfer_id"]) for p in first] == [("submitted", None)]
    assert shop.balance(fan) == (0, 0, 0)  # claimed: neither available nor paid
    soon = shop.run()["payouts"]
    assert [(p["id"], p["state"]) for p in soon] == [(first[0]["id"], "submitted")]
    age_last_attempt(shop.api.session, first[0]["id"], minutes=3)
    later = shop.run()["payouts"]
    assert [(p["id"], p["state"]) for p in later] == [(first[0]["id"], "paid")]
    assert len(shop.fake.transfers) == 1
    keys = [
        r["idempotency_key"]
        for r in shop.fake.requests
        if r["method"] == "POST" and r["path"] == "/v1/transfers"
    ]
    assert keys == [first[0]["id"], first[0]["id"], f"{first[0]['id']}-3"]
    assert shop.balance(fan) == (0, 0, 1500)
    ledger_is_sound(shop.api.session)


def test_a_timeout_after_stripe_created_the_transfer_is_settled_by_looking_in_the_same_run(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_after_create("transfers", "timeout")
    [payout] = shop.run()["payouts"]
    assert payout["state"] == "paid"
    assert payout["stripe_transfer_id"] == shop.fake.transfers[0]["id"]
    assert len(shop.fake.transfers) == 1
    assert shop.run()["payouts"] == []
    assert len(shop.fake.transfers) == 1
    ledger_is_sound(shop.api.session)


def test_a_stripe_4xx_returns_the_money_to_available_and_fails_the_payout(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_next("transfers", 400, message="Your destination account needs capabilities")
    payout = shop.run()["payouts"][0]
    assert payout["state"] == "failed" and "capabilities" in payout["failure_reason"]
    assert shop.balance(fan) == (0, 1500, 0)
    detail = shop.api.ok("GET", f"/v1/payouts/{payout['id']}", shop.api.admin)
    assert [e["to_state"] for e in detail["events"]] == ["pending", "submitted", "failed"]
    assert shop.run()["payouts"][0]["state"] == "paid"  # the next run pays it
    ledger_is_sound(shop.api.session)


def test_fans_see_only_their_own_payouts(shop):
    ann, bob = shop.api.fan(), shop.api.fan()
    shop.earn(ann, 3000)
    shop.earn(bob, 3000)
    shop.connect(ann)
    shop.connect(bob)
    shop.run()
    mine = shop.api.ok("GET", "/v1/payouts", ann)["items"]
    assert [p["fan_id"] for p in mine] == [ann.id]
    other = shop.api.ok("GET", "/v1/payouts", shop.api.admin)["items"]
    bobs = next(p for p in other if p["fan_id"] == bob.id)
    assert shop.api.call("GET", f"/v1/payouts/{bobs['id']}", ann).status_code == 403
    assert shop.api.call("POST", "/v1/payout-runs", ann).status_code == 403


def test_the_payout_account_is_created_once(shop):
    fan = shop.api.fan()
    first = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    again = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    assert first["account_id"] == again["account_id"] and len(shop.fake.accounts) == 1
    assert first["payouts_enabled"] is False
    other = shop.api.fan()
    assert shop.api.call("POST", f"/v1/fans/{fan.id}/payout-account", other).status_code == 403
