"""The README's curl walk-through runs as written: the ``sh`` block under "A walk through
the API with curl", pasted into bash (with ``set -euo pipefail``, so any failing step
fails the test) against a real ``royalties serve`` on this database. Only the port is
changed, to a free one."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.api.live import REPO, royalties_serve

README = REPO / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    section = text[text.index("## A walk through the API with curl") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, "the walk-through's sh block"
    return match.group(1)


def run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not (REPO / ".venv/bin/royalties").exists(), reason="needs .venv")
def test_the_readme_walkthrough_runs_as_written_against_a_live_server(db_url):
    script = walkthrough()
    assert "..." not in script, "no placeholder to fill in by hand"
    with royalties_serve(db_url) as (port, env):
        done = run_script(script.replace("localhost:8000", f"localhost:{port}"), env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout
    assert re.search(r"(?im)^location: https://shop\.example/song\?ref=\w+", out), out
    sale = json.loads(next(line for line in out.splitlines() if '"artist_share"' in line))
    assert [(r["level"], r["amount"]) for r in sale["rewards"]] == [(1, 99)]  # 5% of 1999
    balance = json.loads(next(line for line in out.splitlines() if '"balances"' in line))
    # 99 pending (hold of 30 days); the refund of 1000 took floor(99 * 1000 / 1999) = 49
    assert balance["balances"] == [{"currency": "USD", "pending": 50, "available": 0, "paid": 0}]


def test_the_walkthrough_s_get_stops_on_an_error_answer_instead_of_reading_it():
    """The old walk-through read a failed call's problem ``code`` as a share code."""
    [define] = [line for line in walkthrough().splitlines() if line.startswith("get() {")]
    problem = '{"type": "about:blank", "status": 404, "code": "not_found", "detail": "no"}'
    failed = run_script(f"{define}\nCODE=$(echo '{problem}' | get code)\necho \"got $CODE\"", {})
    assert failed.returncode != 0 and "got" not in failed.stdout
    assert "not_found" in failed.stderr
    fine = run_script(f'{define}\necho \'{{"code": "abc"}}\' | get code', {})
    assert (fine.returncode, fine.stdout.strip()) == (0, "abc")
