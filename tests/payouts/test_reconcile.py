"""``royalties payouts reconcile``: Stripe's transfers against the ledger's payouts, through
the real CLI (a subprocess), the real SDK and the fake Stripe: agreement after a clean
run, a MISMATCH for a transfer the ledger never made, for a reversal not yet applied,
and agreement again once the reversal webhook is in."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from api.dev.fake_stripe import make_event
from royalties.payments.stripe import StripeGateway
from royalties.payouts import reconcile
from tests.payouts.test_payout_crash import cli_env, fresh_session, run_cli

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")


def paid_fans(shop, *amounts: int) -> list[dict]:
    """One connected fan per amount earned, then a payout run; returns its payouts."""
    for amount in amounts:
        fan = shop.api.fan()
        shop.earn(fan, 2 * amount)
        shop.connect(fan)
    payouts = shop.run()["payouts"]
    assert [p["state"] for p in payouts] == ["paid"] * len(amounts)
    shop.api.session.rollback()
    return payouts  # type: ignore[no-any-return]


def after_the_last_transfer_second(shop) -> None:
    """Stripe stamps transfers in whole seconds; step past the last one so a reconcile
    "until now" lists it (see test_reconcile_right_after_a_run_in_the_same_second_agrees)."""
    last = max((t["created"] for t in shop.fake.transfers), default=0)
    while time.time() < last + 1:
        time.sleep(0.05)


def reconcile_cli(shop, db_url: str, *extra: str):
    after_the_last_transfer_second(shop)
    env = cli_env(db_url, shop.fake.url)
    return run_cli("payouts", "reconcile", "--since", YESTERDAY, *extra, env=env)


def mismatches(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("MISMATCH")]


def test_after_a_clean_run_reconcile_exits_0_and_says_stripe_and_the_ledger_agree(shop, db_url):
    paid_fans(shop, 1500, 1200, 1000)
    result = reconcile_cli(shop, db_url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert mismatches(result) == []
    assert "Stripe and the ledger agree" in result.stdout


def test_a_transfer_made_at_stripe_outside_the_ledger_is_a_mismatch_naming_it(shop, db_url):
    [payout] = paid_fans(shop, 1500)
    gateway = StripeGateway("sk_test_x", shop.fake.url)
    stray = gateway.create_transfer(
        amount=777,
        currency="USD",
        destination=shop.fake.transfers[0]["destination"],  # the fan's own account
        transfer_group="not-a-run",
        idempotency_key="made-up-key-0001",
        metadata={"note": "made by hand"},
    )
    result = reconcile_cli(shop, db_url)
    assert result.returncode != 0
    lines = mismatches(result)
    assert len(lines) == 1, result.stdout
    assert stray.id in lines[0] and "777" in lines[0]
    assert payout["stripe_transfer_id"] not in lines[0]
    assert "agree" not in result.stdout


def test_a_reversal_at_stripe_is_a_mismatch_until_its_webhook_is_applied(shop, db_url):
    [payout, other] = paid_fans(shop, 1500, 1100)
    tid = payout["stripe_transfer_id"]
    shop.fake.reverse_transfer(tid, 500)

    before = reconcile_cli(shop, db_url)
    assert before.returncode != 0
    [line] = mismatches(before)
    assert tid in line and "500" in line and "reversed" in line
    assert other["stripe_transfer_id"] not in line

    transfer = next(t for t in shop.fake.transfers if t["id"] == tid)
    response = shop.webhook(make_event("transfer.reversed", transfer))
    assert response.status_code == 200, response.get_json()

    after = reconcile_cli(shop, db_url)
    assert after.returncode == 0, (after.stdout, after.stderr)
    assert "Stripe and the ledger agree" in after.stdout


def test_a_fully_reversed_and_applied_transfer_agrees(shop, db_url):
    [payout] = paid_fans(shop, 1500)
    tid = payout["stripe_transfer_id"]
    shop.fake.reverse_transfer(tid)
    assert reconcile_cli(shop, db_url).returncode != 0
    transfer = next(t for t in shop.fake.transfers if t["id"] == tid)
    assert shop.webhook(make_event("transfer.reversed", transfer)).status_code == 200
    result = reconcile_cli(shop, db_url)
    assert result.returncode == 0, (result.stdout, result.stderr)


# -- the window's edges -------------------------------------------------------------------


def test_reconcile_right_after_a_run_in_the_same_second_agrees(shop, engine):
    """An operator running reconcile (until = now) right after a payout run: Stripe's
    ``created`` is in whole seconds, the ledger's ``updated_at`` in microseconds."""
    gateway = StripeGateway("sk_test_x", shop.fake.url)
    for _attempt in range(3):  # a second boundary between transfer and settle: try again
        fan = shop.api.fan()
        shop.earn(fan, 3000)
        shop.connect(fan)
        [payout] = shop.run()["payouts"]
        assert payout["state"] == "paid"
        until = datetime.fromisoformat(payout["updated_at"]) + timedelta(microseconds=1)
        created = next(
            t["created"] for t in shop.fake.transfers if t["id"] == payout["stripe_transfer_id"]
        )
        if created == int(until.timestamp()):
            break
    else:
        raise AssertionError("could not make a transfer and reconcile in the same second")
    with fresh_session(engine) as session:
        problems = list(reconcile(session, gateway, since=until - timedelta(days=1), until=until))
    assert problems == [], problems


def test_a_payout_sent_before_the_window_and_settled_inside_it_agrees(shop, db_url):
    """A transfer whose answer timed out, found by looking: Stripe dates the transfer two
    days ago (the fake's clock), the ledger marks it paid today."""
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    two_days_ago = int(time.time()) - 2 * 86400
    shop.fake.set_clock(two_days_ago)
    shop.fake.fail_after_create("transfers", "timeout")
    assert [p["state"] for p in shop.run()["payouts"]] == ["paid"]
    shop.fake.set_clock(None)
    assert [t["created"] for t in shop.fake.transfers] == [two_days_ago]
    result = reconcile_cli(shop, db_url)
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_reconcile_settles_an_open_payout_stripe_has_and_lists_the_one_it_has_not(shop, db_url):
    """Two payouts left submitted (their looks failed): Stripe made one transfer and not
    the other. Reconcile pays the first with its transfer and says the second is left."""
    made, lost = shop.api.fan(), shop.api.fan()
    for fan in (made, lost):
        shop.earn(fan, 3000)
        shop.connect(fan)
    shop.api.client.application.config["PAYOUT_CONCURRENCY"] = 1
    shop.fake.fail_after_create("POST transfers", 500)  # the first: made, answered 500
    shop.fake.fail_next("POST transfers", 500, count=1)  # ... then the second: not made
    shop.fake.fail_next("GET transfers", 503, count=2)  # neither look can answer
    run = shop.run()
    assert sorted(p["state"] for p in run["payouts"]) == ["submitted", "submitted"]
    assert len(shop.fake.transfers) == 1
    settled_id = shop.fake.transfers[0]["metadata"]["payout_id"]
    left_id = next(p["id"] for p in run["payouts"] if p["id"] != settled_id)

    result = reconcile_cli(shop, db_url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"payout {settled_id} settled as paid" in result.stdout
    assert f"payout {left_id} " in result.stdout and "next payout run sends it" in result.stdout
    assert mismatches(result) == []
    shop.api.session.rollback()
    states = {
        p["id"]: p["state"] for p in shop.api.ok("GET", "/v1/payouts", shop.api.admin)["items"]
    }
    assert states == {settled_id: "paid", left_id: "submitted"}
