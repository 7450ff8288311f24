"""Stripe Connect onboarding in a real browser: a fan presses "Set up payouts" on the
dashboard, goes through the fake Stripe's onboarding page and comes back.

Headless Chromium (Playwright) talks to the app served over HTTP on 127.0.0.1 with
``PUBLIC_BASE_URL`` set to that server's own address, so the ``refresh_url`` and
``return_url`` the engine hands Stripe bring the browser back to it; the fake Stripe
(api/dev/fake_stripe.py) runs on another port of 127.0.0.1 and serves the account
link pages. Every dashboard page is checked under the app's Content-Security-Policy,
and every URL the browser asked for is kept to prove no API key travels in one.
Screenshots go to the test's tmp_path, and also to ``$DASHBOARD_SCREENSHOTS`` when
that names a directory (to look at them).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from itsdangerous import TimestampSigner
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from api.dev.fake_stripe import FakeStripe
from api.web.onboarding import TOKEN_MAX_AGE, onboarding_urls
from royalties.models import Fan
from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver
from tests.web.conftest import (
    BROWSER_MARKS,
    WATCH_CSP,
    _console,
    _no_csp_violations,
    _sign_in,
    _with_csp,
)

SECRET_KEY = "test-onboarding-secret-key"

pytestmark = BROWSER_MARKS


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(hang_seconds=5) as stripe:
        yield stripe


@pytest.fixture
def app(engine: Any, db_url: str, fake: FakeStripe) -> Flask:
    """The app wired to the fake Stripe (overrides tests/conftest.py's ``app``, so the
    ``api`` driver and the live server below share it)."""
    return create_test_app(
        engine,
        db_url,
        STRIPE_API_KEY="sk_test_onboarding",
        STRIPE_API_BASE=fake.url,
        STRIPE_WEBHOOK_SECRET="whsec_test_onboarding",
        SECRET_KEY=SECRET_KEY,
        PLATFORM_COUNTRY="US",
    )


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, _with_csp(app.wsgi_app), threaded=True)
    base = f"http://127.0.0.1:{server.port}"
    # Known only once the port is: Stripe is handed URLs on this very server.
    app.config["PUBLIC_BASE_URL"] = base
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def visited() -> list[str]:
    """Every URL any page of the test asked for (navigations, redirects, subresources)."""
    return []


@pytest.fixture
def new_page(chromium: Any, live_url: str, visited: list[str]) -> Iterator[Callable[[], Any]]:
    contexts: list[Any] = []
    problems: list[str] = []

    def make() -> Any:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(WATCH_CSP)
        context.on("request", lambda request: visited.append(request.url))
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("framenavigated", lambda frame: visited.append(frame.url))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda msg: _console(msg, problems))
        return page

    yield make
    for context in contexts:
        context.close()
    assert problems == []


@pytest.fixture
def shots(tmp_path: Path) -> Callable[..., Path]:
    target = os.environ.get("DASHBOARD_SCREENSHOTS")

    def take(page: Any, name: str, *, min_bytes: int = 20_000) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > min_bytes, f"{name}: suspiciously small screenshot"
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(target) / path.name)
        return path

    return take


# -- helpers -------------------------------------------------------------------------------


def _link_id(url: str, fake: FakeStripe) -> str:
    match = re.fullmatch(re.escape(fake.url) + r"/connect/link/(al_\w+)", url)
    assert match, f"not a fake Stripe account link: {url}"
    return match.group(1)


def _chain(response: Any) -> list[str]:
    """The URLs of a navigation's redirect chain, first request first."""
    urls, request = [], response.request
    while request is not None:
        urls.append(request.url)
        request = request.redirected_from
    return urls[::-1]


def _fan_row(session: Session, fan_id: str) -> tuple[str | None, bool, bool]:
    session.rollback()
    fan = session.get(Fan, fan_id)
    assert fan is not None
    row = (fan.stripe_account_id, fan.payouts_enabled, fan.transfers_active)
    session.rollback()
    return row


def _no_key_in(urls: list[str], *keys: str) -> None:
    assert urls, "no URL was recorded"
    for url in urls:
        assert "api_key" not in url.lower(), url
        for key in keys:
            assert key not in url, f"an API key in {url}"


def _payouts(page: Any) -> Any:
    return page.locator("section[aria-labelledby=payouts-heading]")


def _start(page: Any, live_url: str, fan: Actor) -> str:
    """Sign the fan in on their page and check the Payouts section before setup."""
    path = f"/dashboard/fans/{fan.id}"
    _sign_in(page, live_url, fan.key, path)
    section = _payouts(page)
    assert section.get_by_role("heading", name="Payouts").is_visible()
    assert "connect a Stripe account" in page.locator("#payout-status").inner_text()
    assert page.locator("#payout-setup #setup-payouts").inner_text() == "Set up payouts"
    assert page.locator("#payout-setup #payout-country").is_visible()
    assert "Leave it empty for US" in page.locator("#payout-country-hint").inner_text()
    return path


# -- tests ---------------------------------------------------------------------------------


def test_a_fan_sets_up_payouts_through_an_expired_link_in_a_browser(
    new_page, live_url, api: ApiDriver, fake: FakeStripe, session, shots, visited
):
    fan = api.fan("ann", email="ann@example.com")
    page = new_page()
    path = _start(page, live_url, fan)
    shots(page, "onboarding-fan-before")

    # The fan presses the button; the engine answers with a 303 to a fresh account link,
    # and the link expires before the browser gets there (the fan was slow, say).
    handed_out: list[str] = []

    def expire_on_the_way(route: Any) -> None:
        response = route.fetch(max_redirects=0)
        assert response.status == 303, response.status
        handed_out.append(response.headers["location"])
        assert fake.expire_links() == 1
        route.fulfill(response=response)

    page.route(f"{live_url}/dashboard/fans/{fan.id}/payouts/setup", expire_on_the_way)
    with page.expect_navigation(url=re.compile(re.escape(fake.url) + "/connect/link/")) as nav:
        page.get_by_role("button", name="Set up payouts").click()
    page.unroute(f"{live_url}/dashboard/fans/{fan.id}/payouts/setup")

    # The expired link sent the browser to the engine's refresh page, which made a new
    # link and sent it there: setup -> link 1 -> refresh -> link 2.
    first, second = _link_id(handed_out[0], fake), _link_id(page.url, fake)
    assert first != second
    chain = [urlsplit(u).path for u in _chain(nav.value)]
    assert len(chain) == 4, chain
    assert chain[0] == f"/dashboard/fans/{fan.id}/payouts/setup"
    assert chain[1] == f"/connect/link/{first}"
    assert chain[2].startswith("/dashboard/payouts/refresh/")
    assert chain[3] == f"/connect/link/{second}"
    assert nav.value.status == 200
    assert page.get_by_role("heading", name="Stripe onboarding").is_visible()

    (account_id, account), *others = fake.accounts.items()
    assert others == []
    assert account["type"] == "express" and account["metadata"] == {"fan_id": fan.id}
    assert account["country"] == "US" and account["email"] == "ann@example.com"
    assert page.get_by_text(f"Account {account_id}").is_visible()
    links = fake.account_links
    assert set(links) == {first, second}
    assert all(link["account"] == account_id for link in links.values())
    assert not links[first]["visited"] and links[second]["visited"]
    for link in links.values():
        assert link["refresh_url"].startswith(live_url + "/dashboard/payouts/refresh/")
        assert link["return_url"].startswith(live_url + "/dashboard/payouts/return/")
    assert _fan_row(session, fan.id) == (account_id, False, False)
    shots(page, "onboarding-stripe-page", min_bytes=5_000)

    # Agree and submit: Stripe completes onboarding and sends the fan back.
    page.get_by_role("button", name="Agree and submit").click()
    page.wait_for_url(re.compile(re.escape(live_url) + "/dashboard/payouts/return/"))
    heading = page.locator("h1#payout-result-heading")
    assert heading.inner_text() == "Payouts are on"
    assert "Stripe has everything it needs" in page.locator("#payout-result").inner_text()
    assert page.locator("#continue-onboarding").count() == 0
    assert page.locator("#payout-needs").count() == 0
    assert _fan_row(session, fan.id) == (account_id, True, True)
    _no_csp_violations(page)
    shots(page, "onboarding-payouts-on")

    # Back on the fan page: payouts are on, and there is nothing left to press.
    page.get_by_role("link", name="Back to your fan page").click()
    page.wait_for_url(live_url + path)
    assert page.locator("#payout-status").inner_text().startswith("Payouts are on")
    assert page.locator("#setup-payouts").count() == 0
    assert page.locator("#payout-setup").count() == 0
    assert "payouts on" in page.locator(".page-head .meta").inner_text()
    _no_csp_violations(page)
    shots(page, "onboarding-fan-after")

    assert len(fake.accounts) == 1
    _no_key_in(visited, fan.key, api.admin.key)
    request_paths = {r["path"] for r in fake.requests}
    assert not any(fan.key in p for p in request_paths)


def test_a_fan_who_leaves_stripe_early_continues_later_in_a_browser(
    new_page, app, live_url, api: ApiDriver, fake: FakeStripe, session, shots, visited
):
    fan = api.fan("bea")
    page = new_page()
    path = _start(page, live_url, fan)

    page.get_by_label("Country (two letters)").fill("fr")
    page.get_by_role("button", name="Set up payouts").click()
    page.wait_for_url(re.compile(re.escape(fake.url) + "/connect/link/"))
    first = _link_id(page.url, fake)
    (account_id, account), *others = fake.accounts.items()
    assert others == []
    # another country than the platform's: the recipient service agreement
    assert account["country"] == "FR"
    assert account["tos_acceptance"]["service_agreement"] == "recipient"

    # The fan leaves Stripe's form without submitting it.
    page.get_by_role("link", name="Return to the platform").click()
    page.wait_for_url(re.compile(re.escape(live_url) + "/dashboard/payouts/return/"))
    assert page.locator("h1#payout-result-heading").inner_text() == "Payouts are not on yet"
    assert page.locator("#payout-result").inner_text() == (
        "You left Stripe's form before finishing it."
    )
    assert page.locator("#payout-needs li").all_inner_texts() == [
        "whether you are paid as a person or a business",
        "a bank account to pay out to",
        "your personal details",
        "accepting Stripe's terms of service",
    ]
    again = page.get_by_role("link", name="Continue with Stripe")
    assert again.get_attribute("id") == "continue-onboarding"
    assert again.get_attribute("href").startswith("/dashboard/payouts/refresh/")
    assert _fan_row(session, fan.id) == (account_id, False, False)
    _no_csp_violations(page)
    shots(page, "onboarding-not-yet")

    # Meanwhile the fan page says setup is unfinished (no country to choose any more).
    return_page = page.url
    page.goto(live_url + path)
    assert "Stripe still needs a few details" in page.locator("#payout-status").inner_text()
    assert page.locator("#setup-payouts").inner_text() == "Finish setting up payouts"
    assert page.locator("#payout-country").count() == 0
    assert "payouts not finished" in page.locator(".page-head .meta").inner_text()
    shots(page, "onboarding-fan-unfinished")
    page.goto(return_page)

    # "Continue with Stripe" goes through the refresh page to a new link.
    with page.expect_navigation(url=re.compile(re.escape(fake.url) + "/connect/link/")) as nav:
        page.get_by_role("link", name="Continue with Stripe").click()
    second = _link_id(page.url, fake)
    assert second != first
    chain = [urlsplit(u).path for u in _chain(nav.value)]
    assert len(chain) == 2 and chain[0].startswith("/dashboard/payouts/refresh/"), chain
    assert set(fake.account_links) == {first, second}

    page.get_by_role("button", name="Agree and submit").click()
    page.wait_for_url(re.compile(re.escape(live_url) + "/dashboard/payouts/return/"))
    assert page.locator("h1#payout-result-heading").inner_text() == "Payouts are on"
    assert page.locator("#payout-needs").count() == 0
    assert _fan_row(session, fan.id) == (account_id, True, True)
    page.get_by_role("link", name="Back to your fan page").click()
    page.wait_for_url(live_url + path)
    assert page.locator("#payout-status").inner_text().startswith("Payouts are on")
    assert page.locator("#setup-payouts").count() == 0

    assert len(fake.accounts) == 1
    _no_key_in(visited, fan.key, api.admin.key)


def test_a_bad_payout_link_shows_a_human_error_page_in_a_browser(
    new_page, app, live_url, api: ApiDriver, fake: FakeStripe, shots, visited, monkeypatch
):
    fan, newcomer = api.fan("cat"), api.fan("dan")
    with app.test_request_context():
        refresh, back = onboarding_urls(fan.id)
        fresh_refresh, fresh_back = onboarding_urls(newcomer.id)
        with monkeypatch.context() as m:
            old = int(time.time() - TOKEN_MAX_AGE.total_seconds()) - 60
            m.setattr(TimestampSigner, "get_timestamp", lambda self: old)
            expired, _ = onboarding_urls(fan.id)
        with monkeypatch.context() as m:  # well formed, signed with another key
            m.setitem(app.config, "SECRET_KEY", "someone-else's-key")
            forged, _ = onboarding_urls(fan.id)
    token = refresh.rsplit("/", 1)[1]
    assert back.endswith("/" + token)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    # the newcomer's id under the fan's timestamp and signature
    payload = fresh_refresh.rsplit("/", 1)[1].split(".")[0]
    swapped = ".".join([payload, *token.split(".")[1:]])
    assert swapped != token

    page = new_page()  # Stripe's redirect carries no dashboard session
    not_valid = "This payout setup link is not valid."
    cases = [
        (f"{live_url}/dashboard/payouts/refresh/garbage", 403, not_valid),
        (f"{live_url}/dashboard/payouts/refresh/{tampered}", 403, not_valid),
        (forged, 403, not_valid),
        (f"{live_url}/dashboard/payouts/refresh/{swapped}", 403, not_valid),
        (f"{live_url}/dashboard/payouts/return/{tampered}", 403, not_valid),
        (expired, 403, "This payout setup link has expired."),
        # a good token, for a fan who never pressed "Set up payouts"
        (fresh_refresh, 404, "No Stripe account has been set up for payouts yet"),
    ]
    for url, status, words in cases:
        response = page.goto(url)
        assert response is not None and response.status == status, url
        assert response.headers["content-type"].startswith("text/html"), url
        body = page.locator("main").inner_text()
        assert words in body, (url, body)
        assert "Traceback" not in page.content(), url
        assert page.locator(".error-page .eyebrow").text_content() == f"Error {status}", url
        title = {not_valid: "Link not valid"}.get(words, "Link expired" if url == expired else None)
        if title:
            assert page.locator(".error-page h1").text_content() == title, url
        assert page.get_by_role("link", name="Back to the dashboard").is_visible()
        _no_csp_violations(page)
        if url.endswith("/garbage"):
            shots(page, "onboarding-bad-link")
        if url == expired:
            shots(page, "onboarding-expired-link")

    # the return page of that newcomer's good token says what to do, with a 200
    response = page.goto(fresh_back)
    assert response is not None and response.status == 200
    assert page.locator("h1#payout-result-heading").inner_text() == "Payouts are not set up yet"
    shots(page, "onboarding-no-account")
    assert fake.account_links == {} and fake.accounts == {}
    _no_key_in(visited, fan.key, newcomer.key, api.admin.key)
