"""The Stripe gateway, driven through the real SDK against our fake Stripe on 127.0.0.1."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from api.dev.fake_stripe import FakeStripe, make_event, sign_payload, standalone
from royalties.errors import PaymentDeclined, PaymentUncertain, WebhookError
from royalties.payments.stripe import StripeGateway, TransferInfo

SECRET = "whsec_test_secret"


def pay(
    gateway: StripeGateway, destination: str, key: str = "payout-1", **overrides: object
) -> TransferInfo:
    args: dict[str, object] = {
        "amount": 1500,
        "currency": "EUR",
        "destination": destination,
        "transfer_group": "run-1",
        "idempotency_key": key,
        "metadata": {"payout_id": key},
    }
    args.update(overrides)
    return gateway.create_transfer(**args)  # type: ignore[arg-type]


@pytest.fixture
def account_id(fake_stripe: FakeStripe) -> str:
    return str(fake_stripe.create_account(payouts_enabled=True)["id"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def posts(fake: FakeStripe, path: str) -> list[dict[str, object]]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == path]


def test_an_express_account_is_created_retrieved_and_onboarded_through_its_link(
    fake_stripe: FakeStripe, gateway: StripeGateway
) -> None:
    account = gateway.create_express_account(fan_id="fan-7", email="f@x.io", idempotency_key="a1")

    assert account.id.startswith("acct_") and account.payouts_enabled is False
    (sent,) = posts(fake_stripe, "/v1/accounts")
    assert sent["idempotency_key"] == "a1"
    assert sent["params"] == {
        "type": "express",
        "email": "f@x.io",
        "metadata": {"fan_id": "fan-7"},
        "capabilities": {"transfers": {"requested": "true"}},
    }
    url = gateway.create_account_link(
        account_id=account.id, refresh_url="https://app/r", return_url="https://app/done"
    )
    assert url.startswith(f"{fake_stripe.url}/connect/link/")
    with urllib.request.urlopen(url, timeout=5) as page:  # the fan's browser opens the link
        assert b"Agree and submit" in page.read()
    assert gateway.retrieve_account(account.id).payouts_enabled is False
    submit = urllib.request.Request(f"{url}/complete", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as back:  # a 302, not followed
        urllib.request.build_opener(_NoRedirect).open(submit, timeout=5)
    assert (back.value.code, back.value.headers["Location"]) == (302, "https://app/done")
    assert gateway.retrieve_account(account.id).payouts_enabled is True


def test_retrieving_an_unknown_account_is_declined(gateway: StripeGateway) -> None:
    with pytest.raises(PaymentDeclined, match="No such account"):
        gateway.retrieve_account("acct_nope")


def test_a_transfer_carries_amount_currency_destination_group_and_metadata(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str
) -> None:
    transfer = pay(gateway, account_id)

    assert transfer.id.startswith("tr_")
    assert (transfer.amount, transfer.currency, transfer.destination) == (1500, "EUR", account_id)
    assert transfer.transfer_group == "run-1" and transfer.metadata == {"payout_id": "payout-1"}
    assert not transfer.reversed and transfer.amount_reversed == 0
    (sent,) = posts(fake_stripe, "/v1/transfers")
    assert sent["params"]["currency"] == "eur"  # type: ignore[index]
    assert sent["idempotency_key"] == "payout-1"


def test_the_same_idempotency_key_replays_the_same_transfer(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str
) -> None:
    first = pay(gateway, account_id)
    second = pay(gateway, account_id)

    assert second == first
    assert len(fake_stripe.transfers) == 1


def test_concurrent_calls_with_one_key_make_one_transfer(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: pay(gateway, account_id), range(16)))

    assert {t.id for t in results} == {fake_stripe.transfers[0]["id"]}
    assert len(fake_stripe.transfers) == 1


def test_the_same_key_with_different_params_is_uncertain_not_a_refusal(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str
) -> None:
    """Stripe's idempotency_error: whatever ran under the key first may have made the
    transfer (here it did), so it must never be read as "nothing happened"."""
    pay(gateway, account_id)
    with pytest.raises(PaymentUncertain, match="same parameters"):
        pay(gateway, account_id, amount=1501)
    assert len(fake_stripe.transfers) == 1


def test_a_429_is_retried_with_the_same_key_until_stripe_lets_it_through(
    fake_stripe: FakeStripe, account_id: str
) -> None:
    naps: list[float] = []
    gateway = StripeGateway("sk_test_x", fake_stripe.url, requests_per_second=0, sleep=naps.append)
    fake_stripe.fail_next("transfers", 429, count=3)
    made = pay(gateway, account_id)
    assert [r["idempotency_key"] for r in posts(fake_stripe, "/v1/transfers")] == ["payout-1"] * 4
    assert [t["id"] for t in fake_stripe.transfers] == [made.id]
    assert len(naps) == 3 and naps[0] < naps[-1]  # backing off, more each time


def test_a_429_that_does_not_clear_within_the_wait_is_uncertain(
    fake_stripe: FakeStripe, account_id: str
) -> None:
    gateway = StripeGateway(
        "sk_test_x", fake_stripe.url, requests_per_second=0, rate_limit_wait=0.6
    )
    fake_stripe.fail_next("transfers", 429, count=50)
    with pytest.raises(PaymentUncertain, match="RateLimitError"):
        pay(gateway, account_id)
    assert 2 <= len(posts(fake_stripe, "/v1/transfers")) < 50
    assert fake_stripe.transfers == []


@pytest.mark.parametrize("status", [500, 502, 503, 409])
def test_server_errors_rate_limits_and_key_conflicts_are_uncertain(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str, status: int
) -> None:
    fake_stripe.fail_next("transfers", status)
    with pytest.raises(PaymentUncertain):
        pay(gateway, account_id)
    assert len(posts(fake_stripe, "/v1/transfers")) == 1, "the SDK must not retry by itself"
    assert fake_stripe.transfers == []


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
def test_definite_client_errors_are_declined(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str, status: int
) -> None:
    fake_stripe.fail_next("transfers", status, message="nope")
    with pytest.raises(PaymentDeclined, match="nope"):
        pay(gateway, account_id)


def test_a_timeout_is_uncertain_and_quick(fake_stripe: FakeStripe, account_id: str) -> None:
    gateway = StripeGateway("sk_test_x", fake_stripe.url, timeout_seconds=0.3)
    fake_stripe.fail_next("transfers", "timeout")
    started = time.monotonic()
    with pytest.raises(PaymentUncertain):
        pay(gateway, account_id)
    assert time.monotonic() - started < 2
    assert fake_stripe.transfers == []


def test_a_closed_port_is_uncertain() -> None:
    with FakeStripe() as fake:
        url = fake.url
    with pytest.raises(PaymentUncertain):
        StripeGateway("sk_test_x", url, timeout_seconds=1).retrieve_account("acct_1")


@pytest.mark.parametrize("failure", ["timeout", "drop"])
def test_a_retry_after_an_ambiguous_failure_returns_the_one_transfer_made(
    fake_stripe: FakeStripe, account_id: str, failure: int | str
) -> None:
    gateway = StripeGateway("sk_test_x", fake_stripe.url, timeout_seconds=0.5)
    fake_stripe.fail_after_create("transfers", failure)
    with pytest.raises(PaymentUncertain):
        pay(gateway, account_id)
    assert len(fake_stripe.transfers) == 1

    retried = pay(gateway, account_id)

    assert retried.id == fake_stripe.transfers[0]["id"]
    assert len(fake_stripe.transfers) == 1


def test_a_retry_after_a_saved_500_gets_the_500_again_while_the_transfer_exists(
    fake_stripe: FakeStripe, account_id: str
) -> None:
    gateway = StripeGateway("sk_test_x", fake_stripe.url, timeout_seconds=0.5)
    fake_stripe.fail_after_create("transfers", 500)
    for _ in range(2):  # Stripe saved the 500 as the key's result: retries replay it
        with pytest.raises(PaymentUncertain):
            pay(gateway, account_id)
    assert len(fake_stripe.transfers) == 1


def test_a_retry_while_the_first_answer_is_still_held_replays_it(
    fake_stripe: FakeStripe, account_id: str
) -> None:
    gateway = StripeGateway("sk_test_x", fake_stripe.url, timeout_seconds=0.3)
    fake_stripe.delay("transfers", 2.0)
    with pytest.raises(PaymentUncertain):
        pay(gateway, account_id)
    assert pay(gateway, account_id).id == fake_stripe.transfers[0]["id"]
    assert len(fake_stripe.transfers) == 1


def test_an_unknown_destination_is_declined(
    fake_stripe: FakeStripe, gateway: StripeGateway
) -> None:
    with pytest.raises(PaymentDeclined, match="No such destination") as caught:
        pay(gateway, "acct_missing")
    assert caught.value.fields["stripe_code"] == "resource_missing"
    assert fake_stripe.transfers == []


def test_a_destination_that_cannot_receive_transfers_is_declined(
    fake_stripe: FakeStripe, gateway: StripeGateway
) -> None:
    not_onboarded = fake_stripe.create_account(payouts_enabled=False)["id"]
    with pytest.raises(PaymentDeclined, match="capabilities enabled: transfers"):
        pay(gateway, not_onboarded)


def test_a_rejected_api_key_is_declined_without_echoing_the_key(fake_stripe: FakeStripe) -> None:
    secret = "sk_live_do_not_print_me"
    with pytest.raises(PaymentDeclined) as caught:
        StripeGateway(secret, fake_stripe.url).retrieve_account("acct_1")
    assert secret not in str(caught.value) and secret not in repr(caught.value.fields)


def test_list_transfers_walks_every_page_and_filters_by_created(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str
) -> None:
    for n in range(230):
        fake_stripe.set_clock(1_700_000_000 + n)
        pay(gateway, account_id, key=f"p{n}", amount=100 + n)

    everything = list(gateway.list_transfers())
    window = list(gateway.list_transfers(created_gte=1_700_000_010, created_lt=1_700_000_120))

    assert len(everything) == 230 and len({t.id for t in everything}) == 230
    assert [t.created for t in everything] == sorted((t.created for t in everything), reverse=True)
    pages = [r for r in fake_stripe.requests if r["method"] == "GET"]
    assert len(pages) >= 3 + 2
    assert len(window) == 110
    assert {t.created for t in window} == set(range(1_700_000_010, 1_700_000_120))


def test_list_transfers_is_empty_when_nothing_was_paid(gateway: StripeGateway) -> None:
    assert list(gateway.list_transfers()) == []


def test_a_reversal_shows_in_retrieve_and_list(
    fake_stripe: FakeStripe, gateway: StripeGateway, account_id: str
) -> None:
    transfer = pay(gateway, account_id)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake_stripe.url})

    partial = client.v1.transfers.reversals.create(transfer.id, {"amount": 500})
    assert partial.id.startswith("trr_") and partial.object == "transfer_reversal"
    half = gateway.retrieve_transfer(transfer.id)
    assert (half.reversed, half.amount_reversed) == (False, 500)

    client.v1.transfers.reversals.create(transfer.id)
    (listed,) = gateway.list_transfers()
    assert listed == gateway.retrieve_transfer(transfer.id)
    assert (listed.reversed, listed.amount_reversed) == (True, 1500)


def test_construct_event_accepts_a_well_signed_event(gateway: StripeGateway) -> None:
    payload = make_event("transfer.reversed", {"id": "tr_1", "object": "transfer", "amount": 5})

    event = gateway.construct_event(payload, sign_payload(payload, SECRET), SECRET)

    assert event["id"].startswith("evt_") and event["type"] == "transfer.reversed"
    assert isinstance(event["created"], int)
    assert type(event["data"]["object"]) is dict
    assert event["data"]["object"]["amount"] == 5


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (lambda p: sign_payload(p, "whsec_other"), "wrong secret"),
        (lambda p: sign_payload(p, SECRET, int(time.time()) - 301), "stale timestamp"),
        (lambda p: sign_payload(p + b" ", SECRET), "body changed"),
        (lambda p: "garbage", "unparsable header"),
        (lambda p: "", "missing header"),
    ],
)
def test_construct_event_rejects_what_does_not_verify(
    gateway: StripeGateway, header: object, reason: str
) -> None:
    payload = make_event("account.updated", {"id": "acct_1"})
    with pytest.raises(WebhookError):
        gateway.construct_event(payload, header(payload), SECRET)  # type: ignore[operator]


def test_construct_event_rejects_a_well_signed_body_that_is_not_json(
    gateway: StripeGateway,
) -> None:
    payload = b"not json"
    with pytest.raises(WebhookError):
        gateway.construct_event(payload, sign_payload(payload, SECRET), SECRET)


def test_the_standalone_fake_serves_the_gateway_and_obeys_its_control_path() -> None:
    with standalone() as remote:
        gateway = StripeGateway("sk_test_x", remote.url, timeout_seconds=2)
        account = remote.create_account(payouts_enabled=True)

        made: TransferInfo = pay(gateway, account["id"])
        remote.fail_next("transfers", 503)
        with pytest.raises(PaymentUncertain):
            pay(gateway, account["id"], key="payout-2")
        remote.set_payouts_enabled(account["id"], False)

        assert [t["id"] for t in remote.transfers] == [made.id]
        assert remote.accounts[account["id"]]["payouts_enabled"] is False
        assert gateway.retrieve_account(account["id"]).payouts_enabled is False
        assert json.dumps(remote.requests)  # the request log crosses the wire too
