"""``royalties dev stripe``: the tests' fake Stripe as a foreground process a person
can point the engine at, with the variables to set and Stripe's webhooks sent on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from api.dev.fake_stripe import RemoteFake
from royalties.payments.stripe import StripeGateway
from tests.api.live import REPO, dev_stripe, free_port, printed_exports


@contextmanager
def webhook_catcher() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """An endpoint of 127.0.0.1 that answers 200 and keeps (body, Stripe-Signature)."""
    received: list[tuple[bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers.get("Stripe-Signature", "")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_it_prints_the_variables_that_point_the_engine_at_it_and_the_sdk_works_there():
    port = free_port()
    with dev_stripe("--port", str(port), "--forward-to", "") as (_proc, banner):
        env = printed_exports(banner)
        assert env == {
            "STRIPE_API_KEY": "sk_test_local",
            "STRIPE_API_BASE": f"http://127.0.0.1:{port}",
            "STRIPE_WEBHOOK_SECRET": "whsec_local",
        }
        gateway = StripeGateway(env["STRIPE_API_KEY"], env["STRIPE_API_BASE"])
        assert gateway.available_balance()["USD"] == 10**12
        assert any("Webhooks: none are sent" in line for line in banner)


def wait_for(received: list[tuple[bytes, str]], kind: str) -> tuple[dict[str, Any], str]:
    """The first webhook of type ``kind`` to arrive (waiting up to 10 s): its raw body
    and parsed event, and its ``Stripe-Signature`` header."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for body, signature in list(received):
            if json.loads(body)["type"] == kind:
                return {"body": body, "event": json.loads(body)}, signature
        time.sleep(0.05)
    raise AssertionError(f"no {kind} webhook arrived: {received}")


def test_an_account_completing_onboarding_sends_a_signed_account_updated_webhook():
    with (
        webhook_catcher() as (hook, received),
        dev_stripe("--port", "0", "--forward-to", hook) as (proc, banner),
    ):
        env = printed_exports(banner)
        fake = RemoteFake(env["STRIPE_API_BASE"])
        account = fake.create_account(payouts_enabled=False)
        wait_for(received, "account.updated")  # the seeding's own; events come in order
        received.clear()
        fake.set_payouts_enabled(account["id"], True)
        got, signature = wait_for(received, "account.updated")
        gateway = StripeGateway(env["STRIPE_API_KEY"], env["STRIPE_API_BASE"])
        event = gateway.construct_event(got["body"], signature, env["STRIPE_WEBHOOK_SECRET"])
        assert event["data"]["object"]["id"] == account["id"]
        assert event["data"]["object"]["payouts_enabled"] is True
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"webhook account.updated {account['id']} -> 200" in out
    assert out.rstrip().endswith("Fake Stripe stopped.")


def test_a_reversed_transfer_sends_transfer_reversed():
    with (
        webhook_catcher() as (hook, received),
        dev_stripe("--port", "0", "--forward-to", hook) as (_proc, banner),
    ):
        env = printed_exports(banner)
        fake = RemoteFake(env["STRIPE_API_BASE"])
        account = fake.create_account()
        gateway = StripeGateway(env["STRIPE_API_KEY"], env["STRIPE_API_BASE"])
        transfer = gateway.create_transfer(
            amount=1000,
            currency="USD",
            destination=account["id"],
            transfer_group="run_1",
            idempotency_key="k-1",
            metadata={"payout_id": "po_1"},
        )
        fake.reverse_transfer(transfer.id, 400)
        got, _signature = wait_for(received, "transfer.reversed")
    assert got["event"]["data"]["object"]["id"] == transfer.id
    assert got["event"]["data"]["object"]["amount_reversed"] == 400


def test_ctrl_c_stops_it_cleanly():
    with dev_stripe("--port", "0", "--forward-to", "") as (proc, _banner):
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in out and out.rstrip().endswith("Fake Stripe stopped.")


def test_a_port_in_use_is_a_clear_error():
    with dev_stripe("--port", "0", "--forward-to", "") as (_proc, banner):
        port = printed_exports(banner)["STRIPE_API_BASE"].rsplit(":", 1)[1]
        taken = subprocess.run(
            [sys.executable, "-m", "api.cli", "dev", "stripe", "--port", port],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr


def test_forward_to_must_be_an_http_url():
    bad = subprocess.run(
        [sys.executable, "-m", "api.cli", "dev", "stripe", "--forward-to", "localhost:8000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "--forward-to" in bad.stderr
