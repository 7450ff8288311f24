"""Payout runs against Stripe as its documentation says it behaves, point by point (the
fake in api/dev/fake_stripe.py imitates each; its own tests name the documented
behaviour): a saved 500 replayed for the key's whole life, keys pruned after 24 hours,
``idempotency_error`` for a key reused with other parameters, dropped connections, 429
beyond a rate, a finite platform balance, the ``transfers`` capability apart from
``payouts_enabled``, and events that arrive out of order. Every scenario ends with
exactly one transfer per fan and a sound ledger."""

from __future__ import annotations

import pytest
import stripe

from api.dev.fake_stripe import make_event
from royalties.models import Fan, PayoutEvent
from royalties.payments.stripe import StripeGateway
from tests.helpers import age_last_attempt, ledger_is_sound


def transfer_posts(fake) -> list[str | None]:
    return [
        r["idempotency_key"]
        for r in fake.requests
        if r["method"] == "POST" and r["path"] == "/v1/transfers"
    ]


def trail(session, payout_id: str) -> list[str]:
    session.rollback()
    events = session.query(PayoutEvent).filter_by(payout_id=payout_id).order_by(PayoutEvent.id)
    return [f"{e.to_state}: {e.detail}" for e in events]


def one_transfer_per_fan(shop, *fans) -> None:
    destinations = [t["destination"] for t in shop.fake.transfers]
    assert len(destinations) == len(set(destinations)) == len(fans)
    for fan in fans:
        _pending, available, paid = shop.balance(fan)
        sent = [t["amount"] for t in shop.fake.transfers if t["metadata"].get("fan_id") == fan.id]
        assert sent == [paid], (fan.id, sent, paid)
        assert available == 0
    ledger_is_sound(shop.api.session)


def pacing_off(shop, **options) -> StripeGateway:
    """The app's gateway without the client-side pacing, so the fake's limit is met."""
    gateway = StripeGateway(
        "sk_test_payouts", shop.fake.url, timeout_seconds=1.5, requests_per_second=0, **options
    )
    shop.api.client.application.extensions["royalties.stripe"] = gateway
    return gateway


# -- saved results, pruned keys, reused keys ---------------------------------------------


def test_a_500_from_a_transfer_stripe_made_is_settled_by_looking_in_the_same_run(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_after_create("transfers", 500)  # made, and the 500 saved under the key
    [payout] = shop.run()["payouts"]
    assert payout["state"] == "paid"
    assert payout["stripe_transfer_id"] == shop.fake.transfers[0]["id"]
    assert transfer_posts(shop.fake) == [payout["id"]]
    assert any("found at Stripe" in line for line in trail(shop.api.session, payout["id"]))
    one_transfer_per_fan(shop, fan)


def test_a_500_from_a_transfer_stripe_made_with_the_look_failing_is_settled_by_the_next_run(
    shop,
):
    """The next run comes soon: it reuses the key, Stripe replays the saved 500, and the
    look that follows finds the transfer."""
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_after_create("transfers", 500)
    shop.fake.fail_next("GET transfers", 503)  # the look after it cannot answer either
    [first] = shop.run()["payouts"]
    assert first["state"] == "submitted" and len(shop.fake.transfers) == 1
    assert shop.balance(fan) == (0, 0, 0)  # in clearing: neither given back nor paid
    [second] = shop.run()["payouts"]
    assert (second["id"], second["state"]) == (first["id"], "paid")
    assert transfer_posts(shop.fake) == [first["id"], first["id"]]
    one_transfer_per_fan(shop, fan)


def test_after_stripe_pruned_the_key_a_retry_looks_first_and_never_pays_twice(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_after_create("transfers", 500)
    shop.fake.fail_next("GET transfers", 503)
    [first] = shop.run()["payouts"]
    assert first["state"] == "submitted"
    shop.fake.advance_clock(25 * 3600)  # Stripe forgets the key after 24 hours
    age_last_attempt(shop.api.session, first["id"], minutes=25 * 60)
    [second] = shop.run()["payouts"]
    assert (second["id"], second["state"]) == (first["id"], "paid")
    assert transfer_posts(shop.fake) == [first["id"]]  # never re-sent: it was found
    one_transfer_per_fan(shop, fan)


def test_a_key_reused_with_other_parameters_is_not_a_refusal_and_the_transfer_is_found(shop):
    """An earlier deploy sent the payout's first attempt with other metadata; Stripe made
    the transfer and answered 500. The current deploy's retry with the same key gets
    ``idempotency_error``: not a refusal, so the money stays in clearing, and the look
    that follows settles the payout with the transfer that exists."""
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    account = shop.connect(fan)
    shop.fake.fail_next("POST transfers", "drop")  # nothing reached Stripe
    [first] = shop.run()["payouts"]
    assert first["state"] == "submitted" and shop.fake.transfers == []
    shop.fake.fail_after_create("transfers", 500)
    old_deploy = stripe.StripeClient(
        "sk_test_payouts", base_addresses={"api": shop.fake.url}, max_network_retries=0
    )
    with pytest.raises(stripe.APIError):  # made, and answered 500
        old_deploy.v1.transfers.create(
            {
                "amount": 1500,
                "currency": "usd",
                "destination": account,
                "transfer_group": first["run_id"],
                "metadata": {"payout_id": first["id"]},  # no fan_id in that version
            },
            options={"idempotency_key": first["id"]},
        )
    assert len(shop.fake.transfers) == 1
    [second] = shop.run()["payouts"]
    assert (second["id"], second["state"]) == (first["id"], "paid")
    assert second["stripe_transfer_id"] == shop.fake.transfers[0]["id"]
    assert any("IdempotencyError" in line for line in trail(shop.api.session, first["id"]))
    assert len(shop.fake.transfers) == 1
    ledger_is_sound(shop.api.session)


def test_a_dropped_connection_after_the_transfer_was_made_pays_the_fan_once(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_after_create("transfers", "drop")
    [payout] = shop.run()["payouts"]
    assert payout["state"] == "paid"
    assert shop.run()["payouts"] == []
    one_transfer_per_fan(shop, fan)


def test_a_saved_refusal_fails_the_payout_and_returns_the_money(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    account = shop.connect(fan)
    shop.fake.set_capability(account, "transfers", "inactive")  # behind the engine's back
    [payout] = shop.run()["payouts"]
    assert payout["state"] == "failed"
    assert "capabilit" in payout["failure_reason"]
    assert shop.balance(fan) == (0, 1500, 0)
    assert shop.fake.transfers == []
    ledger_is_sound(shop.api.session)


# -- rate limits and concurrency -----------------------------------------------------------


def test_429s_during_a_run_slow_it_down_and_one_run_still_pays_everyone(shop):
    fans = [shop.api.fan() for _ in range(12)]
    for fan in fans:
        shop.earn(fan, 2000 + 2 * len(fan.id))
        shop.connect(fan)
    pacing_off(shop)
    shop.fake.set_rate_limit(4)
    run = shop.run()
    assert sorted(p["state"] for p in run["payouts"]) == ["paid"] * 12
    assert run["complete"] is True
    assert len(transfer_posts(shop.fake)) > 12  # some were refused with 429 and re-sent
    shop.fake.set_rate_limit(None)
    one_transfer_per_fan(shop, *fans)


# -- the platform balance --------------------------------------------------------------------


def test_a_platform_balance_that_covers_part_of_a_run_pays_what_it_covers_then_the_rest(shop):
    fans = [shop.api.fan() for _ in range(3)]
    earned = dict(zip((f.id for f in fans), (1500, 1200, 1000), strict=True))
    for fan in fans:
        shop.earn(fan, 2 * earned[fan.id])
        shop.connect(fan)
    shop.fake.set_balance("usd", 2600)
    run = shop.run()
    left, paid, short = 2600, set(), 0
    for fan_id in sorted(earned):  # the run takes fans in id order while the money lasts
        if earned[fan_id] <= left:
            left -= earned[fan_id]
            paid.add(fan_id)
        else:
            short += earned[fan_id]
    assert {p["fan_id"] for p in run["payouts"] if p["state"] == "paid"} == paid
    assert run["platform_balance_short"] == [{"currency": "USD", "amount": short}]
    assert {"reason": "platform_balance_short", "count": 3 - len(paid)}.items() <= next(
        r for r in run["not_paid"] if r["reason"] == "platform_balance_short"
    ).items()
    assert run["complete"] is False
    for fan in fans:
        if fan.id not in paid:
            assert shop.balance(fan) == (0, earned[fan.id], 0)  # still available
    shop.fake.set_balance("usd", 10**9)  # topped up
    again = shop.run()
    assert {p["fan_id"] for p in again["payouts"]} == set(earned) - paid
    assert again["complete"] is True
    one_transfer_per_fan(shop, *fans)


def test_balance_insufficient_during_a_run_stops_new_sends_in_that_currency(shop):
    """The balance read at the start covered the run, but the platform's money went
    elsewhere meanwhile: the first transfer is refused, the rest are not sent."""
    fans = [shop.api.fan() for _ in range(3)]
    for fan in fans:
        shop.earn(fan, 3000)
        shop.connect(fan)
    shop.api.client.application.config["PAYOUT_CONCURRENCY"] = 1
    shop.fake.fail_next("POST transfers", 400, code="balance_insufficient")
    run = shop.run()
    assert [p["state"] for p in run["payouts"]] == ["failed"]
    assert "balance" in run["payouts"][0]["failure_reason"].lower()
    assert run["platform_balance_short"] == [{"currency": "USD", "amount": 3000}]
    assert all(shop.balance(fan) == (0, 1500, 0) for fan in fans)
    assert shop.fake.transfers == []
    again = shop.run()
    assert sorted(p["state"] for p in again["payouts"]) == ["paid"] * 3
    one_transfer_per_fan(shop, *fans)


# -- payable means payable; events out of order ----------------------------------------------


def test_payouts_enabled_without_an_active_transfers_capability_is_not_paid(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    account = shop.connect(fan)
    shop.fake.set_capability(account, "transfers", "inactive")
    obj = shop.fake.accounts[account]
    assert obj["payouts_enabled"] is True
    assert shop.webhook(make_event("account.updated", obj)).status_code == 200
    run = shop.run()
    assert run["payouts"] == [] and shop.fake.transfers == []
    assert [(r["reason"], r["count"]) for r in run["not_paid"]] == [("capability_inactive", 1)]
    shop.fake.set_capability(account, "transfers", "active")
    assert (
        shop.webhook(make_event("account.updated", shop.fake.accounts[account])).status_code == 200
    )
    assert [p["state"] for p in shop.run()["payouts"]] == ["paid"]
    one_transfer_per_fan(shop, fan)


def test_an_old_account_event_arriving_late_changes_nothing_because_stripe_is_asked(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    account = shop.connect(fan, enabled=False)
    stale = make_event("account.updated", shop.fake.accounts[account])  # not onboarded yet
    shop.fake.set_payouts_enabled(account, True)
    fresh = make_event("account.updated", shop.fake.accounts[account])
    assert shop.webhook(fresh).status_code == 200
    assert shop.webhook(stale).status_code == 200  # late, and says payouts are off
    assert shop.webhook(stale).get_json()["result"] == "duplicate"
    shop.api.session.rollback()
    assert shop.api.session.get(Fan, fan.id).payouts_enabled is True
    assert [p["state"] for p in shop.run()["payouts"]] == ["paid"]
    one_transfer_per_fan(shop, fan)


def test_a_forged_snapshot_cannot_enable_payouts_because_stripe_is_asked(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    account = shop.connect(fan, enabled=False)
    claimed = {**shop.fake.accounts[account], "payouts_enabled": True}
    claimed["capabilities"] = {"transfers": "active"}
    assert shop.webhook(make_event("account.updated", claimed)).status_code == 200
    run = shop.run()
    assert run["payouts"] == []
    assert [(r["reason"], r["count"]) for r in run["not_paid"]] == [("payouts_off", 1)]
