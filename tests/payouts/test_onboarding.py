"""Connecting a fan's Stripe account (Stripe's "Account Links" and Express onboarding):
the account is made once even when Stripe's answer is unclear, in the fan's country with
the recipient agreement across borders, and Stripe sends the fan's browser back to the
engine's own pages with a signed token, never an API key. (The whole round trip in a
real browser is tests/web/test_onboarding_browser.py.)"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import itsdangerous
import pytest

from royalties.models import Fan


def link_of(shop, url: str) -> dict:
    link_id = url.rstrip("/").rsplit("/", 1)[1]
    return shop.fake.account_links[link_id]


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def test_stripe_sends_the_fan_back_to_engine_pages_with_a_token_and_no_api_key(shop):
    fan = shop.api.fan()
    body = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    link = link_of(shop, body["onboarding_url"])
    base = shop.api.client.application.config["PUBLIC_BASE_URL"]
    for name, page in (("refresh_url", "refresh"), ("return_url", "return")):
        url = link[name]
        assert url.startswith(f"{base}/dashboard/payouts/{page}/"), url
        assert fan.key not in url and "Bearer" not in url
    assert body["transfers_active"] is False


def test_the_account_is_made_in_the_fan_s_country_with_the_recipient_agreement_abroad(shop):
    home, abroad = shop.api.fan(), shop.api.fan()
    here = shop.api.ok("POST", f"/v1/fans/{home.id}/payout-account", home)
    there = shop.api.ok("POST", f"/v1/fans/{abroad.id}/payout-account", abroad, {"country": "FR"})
    accounts = shop.fake.accounts
    assert accounts[here["account_id"]]["country"] == "US"
    assert accounts[here["account_id"]]["tos_acceptance"]["service_agreement"] == "full"
    assert accounts[there["account_id"]]["country"] == "FR"
    assert accounts[there["account_id"]]["tos_acceptance"]["service_agreement"] == "recipient"


@pytest.mark.parametrize("country", ["fr", "FRA", "F1", ""])
def test_a_country_that_is_not_two_capital_letters_is_refused_and_nothing_is_made(shop, country):
    fan = shop.api.fan()
    response = shop.api.call("POST", f"/v1/fans/{fan.id}/payout-account", fan, {"country": country})
    assert response.status_code == 422
    assert "country" in response.get_json()["errors"]
    assert shop.fake.accounts == {}


def test_a_500_after_stripe_made_the_account_finds_that_account_instead_of_a_second(shop):
    fan = shop.api.fan()
    shop.fake.fail_after_create("accounts", 500)
    body = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    assert list(shop.fake.accounts) == [body["account_id"]]
    assert (
        shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)["account_id"]
        == (body["account_id"])
    )


def test_a_saved_500_without_an_account_does_not_wedge_the_fan(shop):
    """Stripe replays the 500 under the key; the fan's next try uses a new key."""
    fan = shop.api.fan()
    shop.fake.fail_next("POST accounts", 500)
    assert shop.api.call("POST", f"/v1/fans/{fan.id}/payout-account", fan).status_code == 503
    assert shop.fake.accounts == {}
    body = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    assert list(shop.fake.accounts) == [body["account_id"]]
    keys = [
        r["idempotency_key"]
        for r in shop.fake.requests
        if r["path"] == "/v1/accounts" and r["method"] == "POST"
    ]
    assert keys == [f"account-{fan.id}", f"account-{fan.id}-1"]


def test_the_refresh_page_makes_a_new_link_and_redirects_the_browser_to_it(shop):
    fan = shop.api.fan()
    first = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)["onboarding_url"]
    refresh = link_of(shop, first)["refresh_url"]
    page = shop.api.client.get(urlsplit(refresh).path)  # a browser: no API key
    assert page.status_code == 302
    second = page.headers["Location"]
    assert second.startswith(shop.fake.url) and second != first
    assert link_of(shop, second)["account"] == link_of(shop, first)["account"]


def test_the_return_page_asks_stripe_and_says_whether_payouts_are_on(shop):
    fan = shop.api.fan()
    body = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    back = urlsplit(link_of(shop, body["onboarding_url"])["return_url"]).path
    before = shop.api.client.get(back)
    assert before.status_code == 200
    assert "Payouts are not on yet" in before.get_data(as_text=True)
    shop.fake.set_payouts_enabled(body["account_id"], True)  # the fan finished at Stripe
    after = shop.api.client.get(back)
    assert "Payouts are on" in after.get_data(as_text=True)
    shop.api.session.rollback()
    row = shop.api.session.get(Fan, fan.id)
    assert (row.payouts_enabled, row.transfers_active) == (True, True)


@pytest.mark.parametrize("page", ["refresh", "return"])
def test_a_tampered_or_expired_token_gets_a_human_page_and_no_link(shop, page, monkeypatch):
    fan = shop.api.fan()
    body = shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    url = urlsplit(link_of(shop, body["onboarding_url"])[f"{page}_url"]).path
    token = token_of(url)
    links = len(shop.fake.account_links)
    tampered = shop.api.client.get(
        url.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    )
    assert tampered.status_code == 403
    assert "not valid" in tampered.get_data(as_text=True)
    assert tampered.mimetype == "text/html"
    real_time = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real_time() + 25 * 3600)
    expired = shop.api.client.get(url)
    assert expired.status_code == 403
    assert "expired" in expired.get_data(as_text=True)
    assert len(shop.fake.account_links) == links  # no new link for a bad token


def test_the_dashboard_button_sends_the_fan_to_stripe_and_only_the_fan(shop):
    from tests.web.conftest import Browser

    fan = shop.api.fan()
    app = shop.api.client.application
    browser = Browser(app)
    browser.sign_in(fan.key)
    page = browser.get(f"/dashboard/fans/{fan.id}")
    html = page.get_data(as_text=True)
    assert "Set up payouts" in html
    response = browser.post(f"/dashboard/fans/{fan.id}/payouts/setup", {"country": "DE"})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(shop.fake.url)
    [account] = shop.fake.accounts.values()
    assert account["country"] == "DE"
    admin = Browser(app)
    admin.sign_in(shop.api.admin.key)
    other = shop.api.fan()
    assert admin.post(f"/dashboard/fans/{other.id}/payouts/setup").status_code == 403
    bad = browser.post(f"/dashboard/fans/{fan.id}/payouts/setup", {"country": "Germany"})
    assert bad.status_code == 422 and "two-letter" in bad.get_data(as_text=True)
    assert re.search(r"id=\"payout-status\"", html)


def test_links_handed_on_keep_the_start_time_so_a_leaked_url_does_not_live_forever(shop):
    """The refresh and return pages sign new URLs, but for the time the fan started:
    24 hours after pressing the button, every URL of that onboarding has expired."""
    import time

    from api.web.onboarding import _serializer, onboarding_urls

    fan = shop.api.fan()
    shop.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
    app = shop.api.client.application
    started = int(time.time()) - 23 * 3600
    with app.test_request_context():
        refresh, back = onboarding_urls(fan.id, started)
        stale, _ = onboarding_urls(fan.id, int(time.time()) - 25 * 3600)
    page = shop.api.client.get(urlsplit(back).path).get_data(as_text=True)
    again = re.search(r'href="([^"]+)" id="continue-onboarding"', page)
    assert again is not None
    with app.test_request_context():
        assert _serializer().loads(token_of(again.group(1))) == [fan.id, started]
    redirected = shop.api.client.get(urlsplit(refresh).path)
    refreshed = link_of(shop, redirected.headers["Location"])["refresh_url"]
    with app.test_request_context():
        assert _serializer().loads(token_of(refreshed)) == [fan.id, started]
    expired = shop.api.client.get(urlsplit(stale).path)  # freshly signed, started too long ago
    assert expired.status_code == 403 and "expired" in expired.get_data(as_text=True)
