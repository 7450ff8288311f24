"""The gateway paces itself under Stripe's documented rate limits (guide "Rate limits":
about 100 reads and 100 writes a second in live mode, 25 in test mode)."""

from __future__ import annotations

import threading
import time

from api.dev.fake_stripe import FakeStripe
from royalties.payments.stripe import Pacer, StripeGateway, default_rate


def test_the_default_pace_follows_the_key_s_mode_with_headroom() -> None:
    assert default_rate("sk_live_abc") == 90
    assert default_rate("rk_live_abc") == 90
    assert default_rate("sk_test_abc") == 22.5


def test_a_pacer_shared_by_threads_allows_at_most_its_rate() -> None:
    pacer = Pacer(50)
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [pacer.acquire() for _ in range(25)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    # 100 acquisitions at 50/s with a burst of at most one second's worth: >= 1 s.
    assert elapsed >= 0.95, elapsed


def test_an_unpaced_pacer_never_waits() -> None:
    pacer = Pacer(0)
    started = time.monotonic()
    for _ in range(10_000):
        pacer.acquire()
    assert time.monotonic() - started < 0.5


def test_a_paced_gateway_stays_under_the_fake_s_rate_limit() -> None:
    """At 8 a second against a fake that allows 10, no request meets a 429."""
    with FakeStripe() as fake:
        fake.set_rate_limit(10)
        account = fake.create_account()["id"]
        gateway = StripeGateway("sk_test_x", fake.url, requests_per_second=8, rate_limit_wait=0)
        for n in range(20):
            gateway.create_transfer(
                amount=100,
                currency="usd",
                destination=account,
                transfer_group="g",
                idempotency_key=f"k{n}",
                metadata={},
            )
        statuses = [r["status"] for r in fake.requests if r["path"] == "/v1/transfers"]
        assert statuses == [200] * 20
