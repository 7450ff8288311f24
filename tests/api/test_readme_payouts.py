"""The README's "Try payouts locally" runs as written: its last ``sh`` block, pasted
into bash (``set -euo pipefail``) against a live ``royalties dev stripe`` and a live
``royalties serve`` started the way the section's first two blocks say. Only the fixed
ports (8000, 12111) are changed, to free ones."""

from __future__ import annotations

import json
import re
import signal

import pytest

from api.dev.fake_stripe import RemoteFake
from tests.api.live import REPO, dev_stripe, free_port, printed_exports, royalties_serve
from tests.api.test_readme_walkthrough import README, run_script


def blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Try payouts locally") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def exported(block: str) -> dict[str, str]:
    [line] = [line for line in block.splitlines() if line.startswith("export ")]
    return dict(pair.split("=", 1) for pair in line.removeprefix("export ").split())


def test_the_section_starts_the_fake_and_serves_with_the_variables_it_prints():
    start_fake, start_engine, flow = blocks()
    assert start_fake.strip() == ".venv/bin/royalties dev stripe"
    assert "royalties serve" in start_engine
    with dev_stripe("--port", str(free_port()), "--forward-to", "") as (_proc, banner):
        printed = printed_exports(banner)
    port = printed["STRIPE_API_BASE"].rsplit(":", 1)[1]
    as_printed = {**printed, "STRIPE_API_BASE": printed["STRIPE_API_BASE"].replace(port, "12111")}
    assert exported(start_engine) == as_printed
    assert exported(flow) == as_printed, "the third shell needs them for payouts run"


@pytest.mark.skipif(not (REPO / ".venv/bin/royalties").exists(), reason="needs .venv")
def test_try_payouts_locally_goes_from_a_sale_to_a_paid_transfer(db_url):
    flow = blocks()[2]
    assert "..." not in flow, "no placeholder to fill in by hand"
    serve_port, stripe_port = free_port(), free_port()
    hooks = f"http://127.0.0.1:{serve_port}/v1/webhooks/stripe"
    with dev_stripe("--port", str(stripe_port), "--forward-to", hooks) as (fake_proc, banner):
        env = printed_exports(banner)
        with royalties_serve(db_url, port=serve_port, env=env) as (_port, served_env):
            script = flow.replace("localhost:8000", f"localhost:{serve_port}")
            script = script.replace("127.0.0.1:12111", f"127.0.0.1:{stripe_port}")
            done = run_script(script, served_env)
            transfers = RemoteFake(env["STRIPE_API_BASE"]).transfers
        fake_proc.send_signal(signal.SIGTERM)
        fake_log, _ = fake_proc.communicate(timeout=10)
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout
    assert "Payouts are on" in out
    assert re.search(r"\bpaid\W+1\b", out), out  # the summary table's row
    [payout] = json.loads(next(line for line in out.splitlines() if '"items"' in line))["items"]
    assert (payout["state"], payout["amount"], payout["currency"]) == ("paid", 1000, "USD")
    [transfer] = transfers
    assert (transfer["id"], transfer["amount"]) == (payout["stripe_transfer_id"], 1000)
    # The fake sent the onboarding's account.updated to the engine, which took it.
    assert '-> 200 {"received":true,"result":"account updated"}' in fake_log, fake_log
