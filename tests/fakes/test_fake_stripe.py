"""The fake Stripe answers as Stripe's documentation says, driven through the real SDK
(or plain HTTP where a browser is the client)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import stripe

from api.dev.fake_stripe import _CONTROLS, FakeStripe, RemoteFake, standalone

Json = dict[str, Any]
DAY = 24 * 60 * 60


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(hang_seconds=5) as running:
        yield running


def sdk(fake: FakeStripe | RemoteFake, timeout: float = 2.0) -> stripe.StripeClient:
    """Built the way royalties/payments/stripe.py builds its client."""
    return stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": fake.url, "connect": fake.url, "files": fake.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return sdk(fake)


@pytest.fixture
def acct(fake: FakeStripe) -> str:
    return str(fake.create_account()["id"])


def pay(client: stripe.StripeClient, dest: str, key: str = "k1", **params: Any) -> stripe.Transfer:
    body = {"amount": 100, "currency": "usd", "destination": dest, **params}
    return client.v1.transfers.create(body, options={"idempotency_key": key})  # type: ignore[arg-type]


def refused(call: Any, *args: Any, **kwargs: Any) -> stripe.StripeError:
    with pytest.raises(stripe.StripeError) as caught:
        call(*args, **kwargs)
    return caught.value


def error_of(exc: stripe.StripeError) -> Json:
    assert exc.json_body is not None
    return exc.json_body["error"]  # type: ignore[no-any-return]


def raw(
    fake: FakeStripe | RemoteFake,
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    *,
    key: str | None = None,
    api: bool = True,
) -> tuple[int, http.client.HTTPMessage, str]:
    """One plain HTTP request, redirects not followed (a browser's first hop)."""
    url = urlsplit(fake.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if api:
        headers["Authorization"] = "Bearer sk_test_x"
    if key is not None:
        headers["Idempotency-Key"] = key
    body = urlencode(params or {})
    if method == "GET" and body:
        path, body = f"{path}?{body}", ""
    try:
        conn.request(method, path, body=body.encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode()
    finally:
        conn.close()


def transfer_posts(fake: FakeStripe) -> list[Json]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == "/v1/transfers"]


# -- idempotency ----------------------------------------------------------------------


def test_a_replay_of_a_success_has_the_same_status_and_body_and_the_replayed_header(
    fake: FakeStripe, acct: str
) -> None:
    params = {"amount": "100", "currency": "usd", "destination": acct}
    first = raw(fake, "POST", "/v1/transfers", params, key="k1")
    again = raw(fake, "POST", "/v1/transfers", params, key="k1")

    assert first[0] == again[0] == 200 and json.loads(first[2]) == json.loads(again[2])
    assert first[1]["Idempotent-Replayed"] is None
    assert again[1]["Idempotent-Replayed"] == "true"
    assert again[1]["Original-Request"] == first[1]["Request-Id"]
    assert len(fake.transfers) == 1


def test_a_saved_500_is_replayed_for_the_key_s_whole_life(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_clock(1_700_000_000)
    fake.fail_next("transfers", 500)
    first = refused(pay, client, acct)
    fake.advance_clock(DAY - 1)
    for _ in range(2):
        again = refused(pay, client, acct)
        assert (again.http_status, error_of(again)) == (500, error_of(first))
        assert again.headers and again.headers.get("Idempotent-Replayed") == "true"
    assert fake.transfers == [], "a fail_next 500 fails during execution: nothing is made"


def test_fail_after_create_500_makes_the_transfer_and_saves_the_500_for_the_key(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.fail_after_create("transfers", 500)
    assert refused(pay, client, acct).http_status == 500
    assert len(fake.transfers) == 1

    again = refused(pay, client, acct)

    assert again.http_status == 500 and again.headers.get("Idempotent-Replayed") == "true"
    assert len(fake.transfers) == 1


def test_fail_after_create_timeout_saves_the_success_and_never_answers(
    fake: FakeStripe, acct: str
) -> None:
    fake.fail_after_create("transfers", "timeout")
    started = time.monotonic()
    assert isinstance(refused(pay, sdk(fake, timeout=0.3), acct), stripe.APIConnectionError)
    assert time.monotonic() - started < 2

    retried = pay(sdk(fake), acct)

    assert [t["id"] for t in fake.transfers] == [retried.id]


def test_fail_next_drop_closes_the_connection_without_an_answer_and_saves_nothing(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.fail_next("transfers", "drop")
    assert isinstance(refused(pay, client, acct), stripe.APIConnectionError)
    assert fake.transfers == []

    made = pay(client, acct)  # the same key runs anew

    assert [t["id"] for t in fake.transfers] == [made.id]


def test_fail_after_create_drop_closes_the_connection_after_saving_the_success(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.fail_after_create("transfers", "drop")
    assert isinstance(refused(pay, client, acct), stripe.APIConnectionError)
    assert len(fake.transfers) == 1

    assert pay(client, acct).id == fake.transfers[0]["id"]
    assert len(fake.transfers) == 1


def test_delay_saves_the_result_before_holding_the_answer(fake: FakeStripe, acct: str) -> None:
    fake.delay("transfers", 1.0)
    assert isinstance(refused(pay, sdk(fake, timeout=0.2), acct), stripe.APIConnectionError)

    again = pay(sdk(fake), acct)  # not a 409: the key finished before the hold

    assert again.id == fake.transfers[0]["id"] and len(fake.transfers) == 1


def test_balance_insufficient_is_saved_for_the_key(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_balance("usd", 50)
    first = refused(pay, client, acct)
    assert (first.http_status, first.code, error_of(first)["type"]) == (
        400,
        "balance_insufficient",
        "invalid_request_error",
    )
    fake.set_balance("usd", 10_000)

    again = refused(pay, client, acct)

    assert again.code == "balance_insufficient"
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert pay(client, acct, key="k2").amount == 100  # a new key sees the new balance


def test_a_missing_transfers_capability_is_saved_for_the_key(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = fake.create_account(payouts_enabled=False)["id"]
    first = refused(pay, client, dest)
    assert (first.http_status, first.code) == (400, "insufficient_capabilities_for_transfer")
    fake.set_payouts_enabled(dest, True)

    assert refused(pay, client, dest).code == "insufficient_capabilities_for_transfer"
    assert fake.transfers == []


def test_a_validation_error_is_not_saved(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    bad = refused(pay, client, acct, currency="xxx")
    assert (bad.http_status, error_of(bad)["param"]) == (400, "currency")

    made = pay(client, acct)  # same key, other params: runs, since nothing was saved

    assert made.currency == "usd" and len(fake.transfers) == 1


@pytest.mark.parametrize("status", [400, 402, 404, 409, 429])
def test_an_injected_non_5xx_answer_is_not_saved(
    fake: FakeStripe, client: stripe.StripeClient, acct: str, status: int
) -> None:
    fake.fail_next("transfers", status)
    assert refused(pay, client, acct).http_status == status

    assert pay(client, acct).id == fake.transfers[0]["id"]


def test_the_same_key_with_other_parameters_is_an_unsaved_idempotency_error(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    made = pay(client, acct)
    mismatch = refused(pay, client, acct, amount=101)

    assert isinstance(mismatch, stripe.IdempotencyError) and mismatch.http_status == 400
    assert error_of(mismatch)["type"] == "idempotency_error"
    assert "can only be used with the same parameters they were first used with" in str(mismatch)
    assert pay(client, acct).id == made.id  # the first result is still the key's


def test_the_same_key_on_another_endpoint_is_an_idempotency_error(
    client: stripe.StripeClient, acct: str
) -> None:
    pay(client, acct, key="shared")
    other = refused(
        client.v1.accounts.create, {"type": "express"}, options={"idempotency_key": "shared"}
    )
    assert isinstance(other, stripe.IdempotencyError)
    assert "same endpoint" in str(other)


def test_a_second_request_while_the_key_is_executing_gets_an_unsaved_409(
    fake: FakeStripe, acct: str
) -> None:
    fake.set_latency(0.2)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(pay, sdk(fake), acct)
        time.sleep(0.05)
        conflict = refused(pay, sdk(fake), acct)
        made = first.result()

    assert conflict.http_status == 409
    assert (error_of(conflict)["code"], error_of(conflict)["type"]) == (
        "idempotency_key_in_use",
        "invalid_request_error",
    )
    assert "another in-progress request using this Idempotent Key" in str(conflict)
    assert pay(sdk(fake), acct).id == made.id  # the 409 was not saved: the success replays
    assert len(fake.transfers) == 1


def test_a_pruned_key_runs_as_a_new_request_after_24_hours(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_clock(1_700_000_000)
    first = pay(client, acct)
    fake.advance_clock(DAY - 1)
    assert pay(client, acct).id == first.id

    fake.advance_clock(1)
    second = pay(client, acct)

    assert second.id != first.id
    assert len(fake.transfers) == 2


def test_a_key_longer_than_255_characters_is_refused(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    assert refused(pay, client, acct, key="k" * 256).http_status == 400
    assert fake.transfers == []
    pay(client, acct, key="k" * 255)
    assert len(fake.transfers) == 1


# -- clock ------------------------------------------------------------------------------


def test_set_clock_freezes_created_and_advance_clock_moves_it(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_clock(1_700_000_000)
    assert pay(client, acct, key="a").created == 1_700_000_000
    assert fake.advance_clock(60) == 1_700_000_060
    assert pay(client, acct, key="b").created == 1_700_000_060


def test_advance_clock_without_a_set_clock_starts_from_real_time(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    before = int(time.time())
    fake.advance_clock(3600)

    created = pay(client, acct).created

    assert before + 3600 <= created <= int(time.time()) + 3600


# -- balance and currencies ---------------------------------------------------------------


def test_get_balance_lists_available_and_pending_amounts_per_currency(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    fake.set_balance("sek", 500)

    balance = client.v1.balance.retrieve()

    assert balance.object == "balance"
    available = {b.currency: b.amount for b in balance.available}
    assert available["sek"] == 500
    assert all(available[c] == 10**12 for c in ("usd", "eur", "gbp", "cad", "aud", "jpy"))
    assert {b.currency for b in balance.pending} == set(available)


def test_a_transfer_debits_the_balance_and_a_reversal_credits_it_back(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_balance("eur", 1000)
    made = pay(client, acct, amount=600, currency="eur")
    assert fake.balance["eur"] == 400

    client.v1.transfers.reversals.create(made.id, {"amount": 200})
    assert fake.balance["eur"] == 600
    fake.reverse_transfer(made.id)
    assert fake.balance["eur"] == 1000


def test_a_currency_with_no_balance_entry_has_nothing_to_transfer(
    client: stripe.StripeClient, acct: str
) -> None:
    assert refused(pay, client, acct, currency="chf").code == "balance_insufficient"


@pytest.mark.parametrize("code", ["xxx", "abc"])
def test_a_well_formed_but_unsupported_currency_is_refused(
    fake: FakeStripe, client: stripe.StripeClient, acct: str, code: str
) -> None:
    bad = refused(pay, client, acct, currency=code)

    assert (bad.http_status, error_of(bad)["param"]) == (400, "currency")
    supported = "Stripe currently supports these currencies: usd, aed, afn"
    assert f"Invalid currency: {code}. {supported}" in str(bad)
    assert fake.transfers == []


# -- accounts ---------------------------------------------------------------------------


def test_payouts_enabled_alone_does_not_allow_a_transfer(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = fake.create_account(payouts_enabled=True)["id"]
    fake.set_capability(dest, "transfers", "pending")
    assert fake.accounts[dest]["payouts_enabled"] is True

    assert refused(pay, client, dest).code == "insufficient_capabilities_for_transfer"


def test_an_active_transfers_capability_allows_a_transfer_without_payouts_enabled(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = fake.create_account(payouts_enabled=False)["id"]
    fake.set_capability(dest, "transfers", "active")

    assert pay(client, dest).destination == dest
    assert fake.accounts[dest]["payouts_enabled"] is False


def test_set_capability_takes_only_active_inactive_or_pending(fake: FakeStripe, acct: str) -> None:
    with pytest.raises(ValueError, match="capability status"):
        fake.set_capability(acct, "transfers", "enabled")


def test_an_account_keeps_its_country_and_service_agreement_as_stripe_shows_them(
    client: stripe.StripeClient,
) -> None:
    default = client.v1.accounts.create({"type": "express"})
    abroad = client.v1.accounts.create(
        {"type": "express", "country": "fr", "tos_acceptance": {"service_agreement": "recipient"}}
    )

    assert (default.country, default.tos_acceptance.service_agreement) == ("US", "full")  # type: ignore[union-attr]
    assert (abroad.country, abroad.tos_acceptance.service_agreement) == ("FR", "recipient")  # type: ignore[union-attr]


def test_an_unknown_service_agreement_is_refused(client: stripe.StripeClient) -> None:
    bad = refused(
        client.v1.accounts.create,
        {"type": "express", "tos_acceptance": {"service_agreement": "partial"}},
    )
    assert (bad.http_status, error_of(bad)["param"]) == (400, "tos_acceptance[service_agreement]")


def test_a_cross_border_account_needs_the_recipient_agreement_to_receive_transfers(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    full = fake.create_account(country="FR")["id"]  # created and onboarded: Stripe allows it
    recipient = fake.create_account(country="FR", tos_acceptance={"service_agreement": "recipient"})

    no = refused(pay, client, full, key="a")

    assert (no.http_status, no.code) == (400, "transfers_not_allowed")
    assert "Funds can't be sent to accounts located in FR" in str(no)
    assert pay(client, recipient["id"], key="b").destination == recipient["id"]


def test_retrieving_an_account_returns_its_current_state(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = fake.create_account(payouts_enabled=False)["id"]
    assert client.v1.accounts.retrieve(dest).payouts_enabled is False
    fake.set_payouts_enabled(dest, True)
    account = client.v1.accounts.retrieve(dest)
    assert account.payouts_enabled is True and account.capabilities.transfers == "active"  # type: ignore[union-attr]


# -- account links ----------------------------------------------------------------------


def link(client: stripe.StripeClient, acct: str, **overrides: str) -> stripe.AccountLink:
    params = {
        "account": acct,
        "type": "account_onboarding",
        "refresh_url": "https://app.example/refresh",
        "return_url": "https://app.example/return",
        **overrides,
    }
    return client.v1.account_links.create(params)  # type: ignore[arg-type]


def browse(fake: FakeStripe, url: str, method: str = "GET") -> tuple[int, str | None, str]:
    status, headers, body = raw(fake, method, urlsplit(url).path, api=False)
    return status, headers["Location"], body


def test_an_account_link_expires_after_its_ttl_on_the_fake_clock(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_clock(1_700_000_000)
    made = link(client, acct)
    fake.set_link_ttl(60)
    short = link(client, acct)

    assert made.url.startswith(f"{fake.url}/connect/link/")
    assert (made.created, made.expires_at, short.expires_at) == (
        1_700_000_000,
        1_700_000_300,
        1_700_000_060,
    )


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"account": "acct_nope"}, "account", "resource_missing"),
        ({"type": "account_signup"}, "type", "parameter_invalid"),
        ({"refresh_url": ""}, "refresh_url", "parameter_missing"),
        ({"return_url": "/return"}, "return_url", "url_invalid"),
        ({"refresh_url": "ftp://app.example/r"}, "refresh_url", "url_invalid"),
    ],
)
def test_an_account_link_validates_account_type_and_urls(
    client: stripe.StripeClient, acct: str, overrides: dict[str, str], param: str, code: str
) -> None:
    bad = refused(link, client, acct, **overrides)
    assert (bad.http_status // 100, error_of(bad)["param"], bad.code) == (4, param, code)


def test_an_account_link_takes_plain_http_urls_in_test_mode(
    client: stripe.StripeClient, acct: str
) -> None:
    assert link(client, acct, return_url="http://localhost:8000/done").url


def test_a_fresh_link_shows_the_onboarding_page_once_then_redirects_to_refresh_url(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    made = link(client, acct)
    link_id = made.url.rsplit("/", 1)[1]

    status, _, page = browse(fake, made.url)

    assert status == 200 and "Stripe onboarding" in page
    assert '<button type="submit">Agree and submit</button>' in page
    assert f'<form method="post" action="/connect/link/{link_id}/complete">' in page
    assert '<a href="https://app.example/return">Return to the platform</a>' in page
    assert browse(fake, made.url)[:2] == (302, "https://app.example/refresh")


def test_an_expired_link_redirects_to_refresh_url(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    made = link(client, acct)
    fake.advance_clock(301)
    assert browse(fake, made.url)[:2] == (302, "https://app.example/refresh")


def test_expire_links_expires_every_open_link_now(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    links = [link(client, acct), link(client, acct)]
    assert fake.expire_links() == 2
    assert [browse(fake, made.url)[0] for made in links] == [302, 302]


def test_agree_and_submit_completes_onboarding_and_redirects_to_return_url(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = client.v1.accounts.create(
        {"type": "express", "capabilities": {"transfers": {"requested": True}}}
    ).id
    made = link(client, dest)
    browse(fake, made.url)

    assert browse(fake, f"{made.url}/complete", "POST")[:2] == (302, "https://app.example/return")

    account = client.v1.accounts.retrieve(dest)
    assert (account.details_submitted, account.payouts_enabled, account.charges_enabled) == (
        True,
        True,
        True,
    )
    assert account.capabilities.transfers == "active"  # type: ignore[union-attr]


def test_visiting_the_page_without_submitting_completes_nothing(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = fake.create_account(payouts_enabled=False)["id"]
    browse(fake, link(client, dest).url)  # the fan leaves through "Return to the platform"

    account = client.v1.accounts.retrieve(dest)
    assert (account.details_submitted, account.payouts_enabled) == (False, False)


def test_the_old_onboarding_shortcut_still_completes_onboarding(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    dest = fake.create_account(payouts_enabled=False)["id"]
    assert raw(fake, "GET", f"/onboarding/{dest}", api=False)[0] == 200
    assert client.v1.accounts.retrieve(dest).payouts_enabled is True


# -- rate limits --------------------------------------------------------------------------


def test_reads_and_writes_are_rate_limited_separately(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_rate_limit(2)
    pay(client, acct, key="w1")
    pay(client, acct, key="w2")
    limited = refused(pay, client, acct, key="w3")

    assert isinstance(limited, stripe.RateLimitError) and limited.http_status == 429
    assert (error_of(limited)["code"], error_of(limited)["type"]) == (
        "rate_limit",
        "invalid_request_error",
    )
    client.v1.balance.retrieve()  # reads have their own budget
    client.v1.balance.retrieve()
    assert refused(client.v1.balance.retrieve).http_status == 429


def test_a_rate_limited_request_is_not_saved(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.set_rate_limit(1)
    pay(client, acct, key="first")
    assert refused(pay, client, acct, key="k").http_status == 429
    time.sleep(1.05)  # the rolling second passes

    assert pay(client, acct, key="k").id == fake.transfers[-1]["id"]
    assert len(fake.transfers) == 2


def test_control_requests_and_browser_pages_are_never_rate_limited(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    made = link(client, acct)
    fake.set_rate_limit(1)
    remote = RemoteFake(fake.url)
    for _ in range(5):
        assert remote.accounts[acct]["id"] == acct
        assert raw(fake, "GET", f"/onboarding/{acct}", api=False)[0] == 200
    assert browse(fake, made.url)[0] == 200


# -- latency and load ---------------------------------------------------------------------


def test_latency_holds_each_api_request_without_holding_the_fake_s_lock(
    fake: FakeStripe,
) -> None:
    fake.set_latency(0.2)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: sdk(fake).v1.balance.retrieve(), range(8)))
    elapsed = time.monotonic() - started

    assert 0.2 <= elapsed < 0.8, "eight held requests ran side by side"
    fake.transfers  # noqa: B018 -- a control call is never held
    assert time.monotonic() - started - elapsed < 0.1


def test_the_standalone_fake_serves_128_connections_at_well_over_100_requests_a_second() -> None:
    with standalone() as remote:
        remote.set_latency(0.3)
        url = urlsplit(remote.url)
        statuses: list[int] = []
        barrier = threading.Barrier(128)

        def client_loop() -> None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            barrier.wait()
            for _ in range(2):  # keep-alive: two requests on one connection
                conn.request("GET", "/v1/balance", headers={"Authorization": "Bearer sk_test_x"})
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
            conn.close()

        threads = [threading.Thread(target=client_loop) for _ in range(128)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

    assert statuses == [200] * 256
    assert 256 / elapsed > 150, f"{256 / elapsed:.0f} requests/s"


# -- lists --------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 101])
def test_a_list_limit_outside_1_to_100_is_refused(client: stripe.StripeClient, limit: int) -> None:
    bad = refused(client.v1.transfers.list, {"limit": limit})
    assert (bad.http_status, error_of(bad)["param"]) == (400, "limit")


def test_lists_are_newest_first_and_page_with_starting_after_and_ending_before(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    for n in range(5):
        fake.set_clock(1_700_000_000 + n)
        pay(client, acct, key=f"k{n}")
    newest_first = [t["id"] for t in reversed(fake.transfers)]

    page = client.v1.transfers.list({"limit": 2})
    after = client.v1.transfers.list({"limit": 2, "starting_after": newest_first[1]})
    last = client.v1.transfers.list({"limit": 2, "starting_after": newest_first[3]})
    before = client.v1.transfers.list({"limit": 2, "ending_before": newest_first[4]})

    assert ([t.id for t in page.data], page.has_more) == (newest_first[:2], True)
    assert ([t.id for t in after.data], after.has_more) == (newest_first[2:4], True)
    assert ([t.id for t in last.data], last.has_more) == (newest_first[4:], False)
    assert ([t.id for t in before.data], before.has_more) == (newest_first[2:4], True)


def test_lists_filter_by_destination_transfer_group_and_created(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    other = fake.create_account()["id"]
    for n, (dest, group) in enumerate([(acct, "g1"), (other, "g1"), (acct, "g2")]):
        fake.set_clock(1_700_000_000 + n)
        pay(client, dest, key=f"k{n}", transfer_group=group)

    def ids(**params: Any) -> list[int]:
        return [t.created - 1_700_000_000 for t in client.v1.transfers.list(params).data]  # type: ignore[arg-type]

    assert ids(destination=acct) == [2, 0]
    assert ids(transfer_group="g1") == [1, 0]
    assert ids(created={"gte": 1_700_000_001, "lt": 1_700_000_002}) == [1]
    assert ids(destination=acct, created={"gt": 1_700_000_000}) == [2]


# -- reset and remote control ---------------------------------------------------------------


def test_reset_restores_every_knob(fake: FakeStripe, client: stripe.StripeClient) -> None:
    dest = fake.create_account()["id"]
    fake.set_balance("usd", 1)
    fake.set_clock(1_700_000_000)
    fake.set_latency(5)
    fake.set_rate_limit(1)
    fake.set_link_ttl(1)
    fake.set_platform_country("GB")
    fake.fail_next("transfers", 500)

    fake.reset()

    assert fake.accounts == {} and fake.account_links == {} and fake.requests == []
    assert fake.balance["usd"] == 10**12
    dest = fake.create_account()["id"]  # a US account: the platform is US again
    started = time.monotonic()
    made = pay(client, dest)  # no latency, no rate limit, no fault, balance back
    pay(client, dest, key="k2")
    assert time.monotonic() - started < 1 and made.created != 1_700_000_000
    assert link(client, dest).expires_at - made.created >= 299


def test_every_control_is_reachable_over_http_through_remotefake(fake: FakeStripe) -> None:
    remote = RemoteFake(fake.url)
    acct = remote.create_account(payouts_enabled=False)["id"]
    remote.set_capability(acct, "transfers", "active")
    remote.set_balance("usd", 700)
    remote.set_clock(1_700_000_000)
    assert remote.advance_clock(10) == 1_700_000_010
    remote.set_latency(0)
    remote.set_rate_limit(None)
    remote.set_link_ttl(30)
    remote.set_platform_country("US")
    made = link(sdk(fake), acct)
    assert remote.expire_links() == 1

    assert remote.accounts[acct]["capabilities"]["transfers"] == "active"
    assert remote.balance["usd"] == 700
    assert made.expires_at == 1_700_000_010 + 30
    assert [entry["visited"] for entry in remote.account_links.values()] == [False]
    remote.fail_next("transfers", "drop")
    assert isinstance(refused(pay, sdk(fake), acct), stripe.APIConnectionError)
    assert {
        "advance_clock",
        "set_balance",
        "set_capability",
        "set_link_ttl",
        "expire_links",
        "set_rate_limit",
        "set_latency",
        "set_platform_country",
    } <= _CONTROLS


def test_connected_accounts_are_listed_newest_first_and_filtered_by_created(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    fake.set_clock(1_000_000)
    old = client.v1.accounts.create({"type": "express", "metadata": {"fan_id": "a"}})
    fake.advance_clock(60)
    new = client.v1.accounts.create({"type": "express", "metadata": {"fan_id": "b"}})
    page = client.v1.accounts.list({"limit": 1})
    assert [a.id for a in page.data] == [new.id] and page.has_more
    after = client.v1.accounts.list({"limit": 1, "starting_after": new.id})
    assert [a.id for a in after.data] == [old.id] and not after.has_more
    recent = client.v1.accounts.list({"created": {"gte": 1_000_030}})
    assert [(a.id, a.metadata["fan_id"]) for a in recent.data] == [(new.id, "b")]


def test_a_fault_for_one_method_leaves_the_other_method_alone(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.fail_next("GET transfers", 503)
    made = pay(client, acct)  # the POST is not the GET the fault waits for
    assert refused(client.v1.transfers.list).http_status == 503
    assert [t.id for t in client.v1.transfers.list().data] == [made.id]


def test_an_injected_error_can_carry_a_stripe_code(
    fake: FakeStripe, client: stripe.StripeClient, acct: str
) -> None:
    fake.fail_next("POST transfers", 400, code="balance_insufficient")
    exc = refused(pay, client, acct)
    assert (exc.http_status, exc.code) == (400, "balance_insufficient")
    assert fake.transfers == []
