"""Fixtures for the Stripe gateway: a fake Stripe on 127.0.0.1 and a gateway aimed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.dev.fake_stripe import FakeStripe
from royalties.payments.stripe import StripeGateway


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def gateway(fake_stripe: FakeStripe) -> StripeGateway:
    # Unpaced: these tests are about answers, not rates (test_pacing.py is about rates).
    return StripeGateway("sk_test_x", fake_stripe.url, timeout_seconds=2, requests_per_second=0)
