"""Review decisions and payouts write their events with the objects as the API shows them."""

from __future__ import annotations

from api.dev.fake_stripe import make_event
from tests.helpers import events_after, last_seq, new_key, share


def held_sale(shop, fan, buyer_email):
    """A sale whose buyer looks like the fan (a plus-address of its email): held."""
    code = share(shop.api, fan, shop.item["id"])
    payload = {
        "content_id": shop.item["id"],
        "amount": 3000,
        "currency": "USD",
        "buyer": {"email": buyer_email},
        "share_code": code,
    }
    headers = {"Idempotency-Key": new_key()}
    return shop.api.ok("POST", "/v1/purchases", shop.storefront, payload, 201, headers=headers)


def shown_reward(shop, fan, reward_id):
    items = shop.api.ok("GET", f"/v1/fans/{fan.id}/rewards", fan)["items"]
    return next(item for item in items if item["id"] == reward_id)


def decide(shop, decision):
    [held] = shop.api.ok("GET", "/v1/review", shop.api.admin)["items"]
    body = {"decision": decision, "reason": "checked"}
    shop.api.ok("POST", f"/v1/review/{held['reward_id']}", shop.api.admin, body)
    return held["reward_id"]


def test_a_hold_and_both_decisions_are_events(shop, session):
    lee, kim = shop.api.fan(email="lee@example.com"), shop.api.fan(email="kim@example.com")
    before = last_seq(session)
    held_sale(shop, lee, "lee+alt@example.com")
    types = [e["type"] for e in events_after(session, before)]
    assert types == ["fan.enrolled", "purchase.recorded", "reward.created", "reward.held"]
    held = events_after(session, before)[-1]["data"]
    assert held["state"] == "held"

    before = last_seq(session)
    approved = decide(shop, "approve")
    [released] = events_after(session, before)
    assert released["type"] == "reward.released"
    assert released["data"]["id"] == approved
    assert released["data"]["state"] == "pending"  # goes on as if never held

    held_sale(shop, kim, "kim+alt@example.com")
    before = last_seq(session)
    rejected = decide(shop, "reject")
    [event] = events_after(session, before)
    assert event["type"] == "reward.rejected"
    assert event["data"] == shown_reward(shop, kim, rejected)
    assert event["_whose"] == (shop.storefront.id, shop.artist.id, kim.id)


def test_payouts_paid_failed_and_reversed_are_events(shop, session):
    ann, bea = shop.api.fan(), shop.api.fan()
    shop.earn(ann, 3000)
    shop.earn(bea, 4000)
    shop.connect(ann)
    shop.connect(bea)
    shop.fake.fail_next("POST transfers", 400, message="No such destination")
    before = last_seq(session)
    run = shop.run()
    events = [e for e in events_after(session, before) if e["type"].startswith("payout.")]
    by_fan = {p["fan_id"]: p for p in run["payouts"]}
    assert sorted(e["type"] for e in events) == ["payout.failed", "payout.paid"]
    for event in events:
        listed = shop.api.ok(
            "GET", "/v1/payouts", shop.api.admin, query_string={"fan_id": event["data"]["fan_id"]}
        )["items"]
        assert event["data"] == listed[0] == by_fan[event["data"]["fan_id"]]
        assert event["_whose"] == (None, None, event["data"]["fan_id"])
    paid = next(e["data"] for e in events if e["type"] == "payout.paid")

    transfer = next(t for t in shop.fake.transfers if t["id"] == paid["stripe_transfer_id"])
    shop.fake.reverse_transfer(transfer["id"], 500)
    transfer = next(t for t in shop.fake.transfers if t["id"] == paid["stripe_transfer_id"])
    before = last_seq(session)
    assert shop.webhook(make_event("transfer.reversed", transfer)).status_code == 200
    [reversed_] = events_after(session, before)
    assert reversed_["type"] == "payout.reversed"
    assert reversed_["data"]["reversed_amount"] == 500
    assert (
        reversed_["data"]
        == shop.api.ok(
            "GET", "/v1/payouts", shop.api.admin, query_string={"fan_id": paid["fan_id"]}
        )["items"][0]
    )
