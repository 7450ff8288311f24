"""``royalties dev stripe``: the fake Stripe of the test suite, served in the foreground
so payouts can be tried without a Stripe account.

It prints the variables that point ``royalties serve`` and ``royalties payouts run`` at
it, and sends webhooks the way Stripe would: every ``account.updated`` and
``transfer.reversed`` the fake produces is signed with the printed
``STRIPE_WEBHOOK_SECRET`` and POSTed to the engine, one at a time, in order, from a
thread of its own (the fake calls ``on_event`` under its lock, and the engine answers
an event by fetching the object from the fake). An event the engine does not take is
logged and dropped: Stripe would retry, this fake does not.
"""

from __future__ import annotations

import queue
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import Any

from api.dev.fake_stripe import FakeStripe, make_event, sign_payload

# Fixed, so a README can show them and a second run needs no new exports. The fake
# accepts any ``sk_test_`` key; the engine verifies webhooks with the secret.
API_KEY = "sk_test_local"
WEBHOOK_SECRET = "whsec_local"  # noqa: S105 - the fake's, printed for anyone to use


class WebhookSender:
    """Signs and POSTs the fake's events to ``url``, in order, off the fake's lock."""

    def __init__(self, url: str, secret: str, log: Callable[[str], None]) -> None:
        self.url = url
        self.secret = secret
        self.log = log
        self._queue: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        self._queue.put((kind, str(obj.get("id")), make_event(kind, obj)))

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, object_id, payload = item
            self.log(f"webhook {kind} {object_id} -> {self._deliver(payload)}")

    def _deliver(self, payload: bytes) -> str:
        request = urllib.request.Request(  # noqa: S310 - an http(s) URL checked by the CLI
            self.url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign_payload(payload, self.secret),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return f"{answer.status} {answer.read().decode(errors='replace').strip()[:200]}"
        except urllib.error.HTTPError as refused:
            return f"{refused.code} {refused.read().decode(errors='replace').strip()[:200]}"
        except OSError as failed:
            return f"not delivered to {self.url}: {failed}"


def banner(url: str, forward_to: str | None) -> str:
    """What to set in the engine's shells, and how the fake stands in for Stripe."""
    webhooks = (
        f"Webhooks: account.updated and transfer.reversed are signed with\n"
        f"STRIPE_WEBHOOK_SECRET and sent to {forward_to} as the fake\n"
        "produces them (--forward-to changes where)."
        if forward_to
        else "Webhooks: none are sent (--forward-to URL sends them)."
    )
    return f"""\
Fake Stripe listening on {url} (in memory; everything is gone when it stops).

Set these in the shells of `royalties serve` and `royalties payouts run`:

export STRIPE_API_KEY={API_KEY}
export STRIPE_API_BASE={url}
export STRIPE_WEBHOOK_SECRET={WEBHOOK_SECRET}

Onboarding: a link from POST /v1/fans/<id>/payout-account opens the fake's page;
"Agree and submit" completes the account and goes back to the engine's return page.
Without a browser: curl -s "$LINK" >/dev/null && curl -sL -d '' "$LINK/complete"
{webhooks}
Controls: POST {url}/_fake/<name> with JSON arguments, listed in
api/dev/fake_stripe.py; e.g. reverse a transfer (transfer.reversed follows):
curl -d '{{"transfer_id": "tr_..."}}' {url}/_fake/reverse_transfer

Stop with Ctrl-C.
"""


def serve(
    host: str,
    port: int,
    *,
    forward_to: str | None,
    echo: Callable[[str], None],
) -> None:
    """Serve until SIGINT or SIGTERM, then stop the fake and the webhook sender."""
    fake = FakeStripe(host, port)
    if host in ("0.0.0.0", ""):  # noqa: S104 - listening everywhere: links name this host
        fake.url = f"http://127.0.0.1:{fake.url.rsplit(':', 1)[1]}"
    sender = WebhookSender(forward_to, WEBHOOK_SECRET, echo) if forward_to else None
    fake.on_event = sender
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    fake.start()
    try:
        echo(banner(fake.url, forward_to))
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
        if sender is not None:
            sender.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    echo("Fake Stripe stopped.")
