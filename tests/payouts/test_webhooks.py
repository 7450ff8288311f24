"""Stripe webhooks: verified with the SDK, acted on once, reversals restore balances."""

from __future__ import annotations

import time

from api.dev.fake_stripe import make_event, sign_payload
from royalties.models import Fan, WebhookEvent
from tests.helpers import ledger_is_sound, row_counts
from tests.payouts.conftest import WEBHOOK_SECRET


def transfer(shop, payout):
    """The Transfer object, as Stripe puts it in a transfer.reversed event."""
    return next(t for t in shop.fake.transfers if t["id"] == payout["stripe_transfer_id"])


def test_account_updated_enables_payouts_once_and_a_replay_changes_nothing(shop):
    fan = shop.api.fan()
    account = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)["account_id"]
    shop.fake.set_payouts_enabled(account, True)
    payload = make_event("account.updated", shop.fake.accounts[account])
    assert shop.webhook(payload).get_json()["result"] == "account updated"
    assert shop.api.session.get(Fan, fan.id).payouts_enabled is True
    shop.api.session.rollback()
    shop.api.session.get(Fan, fan.id)
    counts = row_counts(shop.api.session)
    assert shop.webhook(payload).get_json()["result"] == "duplicate"
    assert row_counts(shop.api.session) == counts


def test_a_bad_signature_is_400_and_changes_nothing(shop):
    fan = shop.api.fan()
    account = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)["account_id"]
    shop.fake.set_payouts_enabled(account, True)
    payload = make_event("account.updated", shop.fake.accounts[account])
    before = row_counts(shop.api.session)
    for signature in (sign_payload(payload, "whsec_wrong"), "garbage", "t=1,v1=00"):
        response = shop.webhook(payload, signature=signature)
        assert response.status_code == 400
        assert response.get_json()["code"] == "webhook_signature"
    missing = shop.api.client.post("/v1/webhooks/stripe", data=payload)
    assert missing.status_code == 400
    assert row_counts(shop.api.session) == before
    assert shop.api.session.get(Fan, fan.id).payouts_enabled is False


def test_a_stale_timestamp_is_400(shop):
    payload = make_event("account.updated", {"id": "acct_x", "payouts_enabled": True})
    stale = sign_payload(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    assert shop.webhook(payload, signature=stale).status_code == 400
    assert shop.api.session.query(WebhookEvent).count() == 0


def test_transfer_reversed_restores_the_balance_and_fails_the_payout(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    payout = shop.run()["payouts"][0]
    shop.fake.reverse_transfer(payout["stripe_transfer_id"])
    payload = make_event("transfer.reversed", transfer(shop, payout))
    assert shop.webhook(payload).get_json()["result"] == "transfer reversal applied"
    assert shop.balance(fan) == (0, 1500, 0)
    after = shop.api.ok("GET", f"/v1/payouts/{payout['id']}", shop.api.admin)
    assert after["state"] == "failed" and after["reversed_amount"] == 1500
    assert shop.webhook(payload).get_json()["result"] == "duplicate"
    assert shop.balance(fan) == (0, 1500, 0)
    ledger_is_sound(shop.api.session)


def test_a_partial_reversal_returns_only_the_reversed_part(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    payout = shop.run()["payouts"][0]
    shop.fake.reverse_transfer(payout["stripe_transfer_id"], amount=500)
    shop.webhook(make_event("transfer.reversed", transfer(shop, payout)))
    assert shop.balance(fan) == (0, 500, 1000)


def test_webhooks_without_a_configured_secret_are_503(papi, shop):
    shop.api.client.application.config["STRIPE_WEBHOOK_SECRET"] = ""
    payload = make_event("account.updated", {"id": "acct_x"})
    response = shop.webhook(payload)
    assert response.status_code == 503 and response.get_json()["code"] == "not_configured"


def test_an_account_event_whose_fetch_fails_is_refused_whole_and_handled_on_redelivery(shop):
    """Stripe redelivers an event that was not answered 2xx: a failed fetch must leave
    nothing behind, not even the event id, or the redelivery would be a "duplicate"."""
    fan = shop.api.fan()
    account = shop.connect(fan, enabled=False)
    shop.fake.set_payouts_enabled(account, True)
    event = make_event("account.updated", shop.fake.accounts[account])
    shop.fake.fail_next("GET accounts", 500)
    refused = shop.webhook(event)
    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"
    shop.api.session.rollback()
    assert shop.api.session.get(Fan, fan.id).payouts_enabled is False
    shop.api.session.rollback()  # SQLite: a transaction of ours would hold the write lock
    again = shop.webhook(event)
    assert again.status_code == 200 and again.get_json()["result"] == "account updated"
    shop.api.session.rollback()
    fan_row = shop.api.session.get(Fan, fan.id)
    assert (fan_row.payouts_enabled, fan_row.transfers_active) == (True, True)
