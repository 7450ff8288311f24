"""Payout fixtures: the app wired to a fake Stripe on 127.0.0.1, and fans with money."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.dev.fake_stripe import FakeStripe, make_event, sign_payload
from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver, buy, share

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(hang_seconds=5) as fake:
        yield fake


@pytest.fixture
def stripe_config(fake_stripe: FakeStripe) -> dict[str, Any]:
    return {
        "STRIPE_API_KEY": "sk_test_payouts",
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MIN_PAYOUT": 1000,
    }


@pytest.fixture
def papi(engine, db_url, session, stripe_config) -> ApiDriver:
    app = create_test_app(engine, db_url, **stripe_config)
    from api.extensions import gateway_from_config
    from royalties.payments.stripe import StripeGateway

    # Short client timeout so simulated Stripe timeouts stay quick.
    app.extensions["royalties.stripe"] = StripeGateway(
        stripe_config["STRIPE_API_KEY"], stripe_config["STRIPE_API_BASE"], timeout_seconds=1.5
    )
    assert isinstance(gateway_from_config(app.config), StripeGateway)
    return ApiDriver(app.test_client(), session)


@dataclass
class Shop:
    api: ApiDriver
    fake: FakeStripe
    artist: Actor
    storefront: Actor
    item: dict[str, Any]

    def earn(self, fan: Actor, amount: int, *, buyer: str | None = None) -> dict[str, Any]:
        """A sale through ``fan``'s link; plan [5000] with no hold, so fan earns amount/2."""
        code = share(self.api, fan, self.item["id"])
        return buy(  # type: ignore[no-any-return]
            self.api,
            self.storefront,
            self.item,
            {"email": buyer or f"b{amount}-{fan.id}@x.io"},
            amount=amount,
            share_code=code,
        )

    def connect(self, fan: Actor, *, enabled: bool = True) -> str:
        body = self.api.ok("POST", f"/v1/fans/{fan.id}/payout-account", fan)
        assert body["onboarding_url"].startswith(self.fake.url)
        if enabled:
            self.fake.set_payouts_enabled(body["account_id"], True)
            obj = self.fake.accounts[body["account_id"]]
            assert self.webhook(make_event("account.updated", obj)).status_code == 200
        return body["account_id"]  # type: ignore[no-any-return]

    def webhook(self, payload: bytes, *, signature: str | None = None) -> Any:
        return self.api.client.post(
            "/v1/webhooks/stripe",
            data=payload,
            headers={
                "Stripe-Signature": signature or sign_payload(payload, WEBHOOK_SECRET),
                "Content-Type": "application/json",
            },
        )

    def run(self) -> dict[str, Any]:
        return self.api.ok("POST", "/v1/payout-runs", self.api.admin, None, 201)  # type: ignore[no-any-return]

    def balance(self, fan: Actor) -> tuple[int, int, int]:
        body = self.api.ok("GET", f"/v1/fans/{fan.id}/balance", fan)
        line = body["balances"][0]
        return line["pending"], line["available"], line["paid"]


@pytest.fixture
def shop(papi: ApiDriver, fake_stripe: FakeStripe) -> Shop:
    artist, storefront = papi.artist(), papi.storefront()
    papi.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [5000], "hold_days": 0},
    )
    return Shop(papi, fake_stripe, artist, storefront, papi.content(artist, price=3000))


__all__ = ["WEBHOOK_SECRET", "Shop", "json"]
