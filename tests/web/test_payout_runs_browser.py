"""The operator's payout run in a real browser: a reward held by a fraud signal is
approved on the review page, then a run is started from the payouts page and watched
until it finishes -- one fan paid (with Stripe's transfer id), one whose transfer Stripe
refuses shown failed with Stripe's code and message. Also at 390 px wide.

Headless Chromium (Playwright) against the app served over HTTP on 127.0.0.1, the
strict fake Stripe on another port (fixtures shared with test_onboarding_browser.py),
every page under the app's Content-Security-Policy.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from api.dev.fake_stripe import FakeStripe, make_event, sign_payload
from royalties.fraud.detectors import FraudConfig
from tests.api.test_fraud_clearing import farmed_sponsor
from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver, buy, share
from tests.web import test_onboarding_browser as onboarding
from tests.web.conftest import BROWSER_MARKS, _no_csp_violations, _sign_in

pytestmark = BROWSER_MARKS

# The onboarding journey's fixtures: the fake Stripe, the served app, pages, screenshots.
fake = onboarding.fake
live_url = onboarding.live_url
new_page = onboarding.new_page
shots = onboarding.shots
visited = onboarding.visited

WEBHOOK_SECRET = "whsec_test_runs"


@pytest.fixture
def app(engine: Any, db_url: str, fake: FakeStripe) -> Flask:
    """Fraud thresholds low enough to flag a small signup farm, and the fake Stripe."""
    return create_test_app(
        engine,
        db_url,
        FRAUD=FraudConfig(signup_min=4, signup_share_pct=75, click_min=5),
        STRIPE_API_KEY="sk_test_runs",
        STRIPE_API_BASE=fake.url,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SECRET_KEY="test-payout-runs-secret-key",
        MIN_PAYOUT=1000,
    )


def _payable(api: ApiDriver, stripe: FakeStripe, fan: Actor) -> str:
    """The fan's Stripe account, onboarded, as the engine learns it: Stripe's webhook."""
    account = api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)["account_id"]
    stripe.set_payouts_enabled(account, True)
    payload = make_event("account.updated", stripe.accounts[account])
    answer = api.client.post(
        "/v1/webhooks/stripe",
        data=payload,
        headers={
            "Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 200
    return account  # type: ignore[no-any-return]


def _row(page: Any, fan: Actor) -> Any:
    return page.locator(f"#run-payouts tr[data-fan='{fan.id}']")


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page scrolls sideways: {width}px"


def test_the_operator_approves_a_held_reward_runs_payouts_and_watches_them_finish(
    new_page, live_url, api: ApiDriver, fake: FakeStripe, shots
):
    artist, shop = api.artist(), api.storefront()
    api.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [5000], "hold_days": 0},
    )
    item = api.content(artist, price=3000)
    held = farmed_sponsor(api)  # flagged signup_farm: its rewards wait for review
    buy(api, shop, item, {"email": "held@x.io"}, share_code=share(api, held, item["id"]))
    refused = api.fan("refused")
    buy(api, shop, item, {"email": "other@x.io"}, share_code=share(api, refused, item["id"]))
    paid_account = _payable(api, fake, held)
    refused_account = _payable(api, fake, refused)
    # Stripe turned the transfers capability off and the engine has not heard yet: the
    # fan looks payable, and Stripe refuses the transfer.
    fake.set_capability(refused_account, "transfers", "inactive")
    (reward,) = api.ok("GET", "/v1/review", api.admin)["items"]
    fake.set_latency(0.7)  # a run that takes a moment, to watch

    page = new_page()
    _sign_in(page, live_url, api.admin.key, "/dashboard/review")
    page.get_by_label(f"Select reward {reward['reward_id']}").check()
    page.get_by_label("Reason (kept with the decision)").fill("checked with the fan")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_url(live_url + "/dashboard/review")
    assert page.get_by_text("Approved 1 reward.").is_visible()

    page.goto(live_url + "/dashboard/")
    page.locator("#payouts-link").click()
    page.wait_for_url(live_url + "/dashboard/admin/payouts")
    assert page.get_by_text("No payout run yet.").is_visible()
    _no_csp_violations(page)
    shots(page, "payout-runs-empty")

    page.get_by_role("button", name="Run payouts now").click()
    page.wait_for_url(re.compile(re.escape(live_url) + r"/dashboard/admin/payouts/runs/run_\w+$"))
    run_id = page.url.rsplit("/", 1)[1]
    summary = page.locator("#run-summary")
    assert summary.locator("[data-run-status]").inner_text() == "running"
    shots(page, "payout-run-running")
    # The page polls and reloads itself once the run is over.
    page.wait_for_selector("#run-summary[data-run-state=finished]", timeout=30_000)
    assert "2 of 2 done" in summary.inner_text()
    _no_csp_violations(page)

    (transfer,) = fake.transfers
    assert transfer["destination"] == paid_account and transfer["amount"] == 1500
    paid = _row(page, held)
    assert paid.locator(".pill").inner_text() == "paid"
    assert paid.locator("code.transfer").inner_text() == transfer["id"]
    assert "15.00 USD" in paid.inner_text()
    failed = _row(page, refused)
    assert failed.locator(".pill").inner_text() == "failed"
    reason = failed.locator(".failure").inner_text()
    assert "insufficient_capabilities_for_transfer" in reason and "capabilit" in reason.lower()
    assert page.locator("#count-paid").inner_text() == "1"
    assert page.locator("#count-failed").inner_text() == "1"
    shots(page, "payout-run-finished")

    page.get_by_role("link", name="Payout runs").click()
    page.wait_for_url(live_url + "/dashboard/admin/payouts")
    row = page.locator(f"#runs tr[data-run='{run_id}']")
    assert row.locator("[data-count=paid]").inner_text() == "1"
    assert row.locator("[data-count=failed]").inner_text() == "1"
    assert row.locator("[data-run-status]").inner_text() == "finished"

    # On a phone: nothing scrolls sideways, the button and the reasons are there.
    page.set_viewport_size({"width": 390, "height": 844})
    _fits(page)
    assert page.get_by_role("button", name="Run payouts now").is_visible()
    shots(page, "payout-runs-390")
    page.goto(f"{live_url}/dashboard/admin/payouts/runs/{run_id}")
    _fits(page)
    assert _row(page, refused).locator(".failure").is_visible()
    _no_csp_violations(page)
    shots(page, "payout-run-390")
