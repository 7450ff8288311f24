"""The README's first command: `royalties demo` replays SPEC section 9 and checks the ledger."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_prints_the_worked_example_and_a_sound_ledger(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "demo", "--database", str(tmp_path / "demo.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "120", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "floor(1999 * 500 / 10000) = 99",
        "= 39",
        "= 19",
        "= 9 ",
        "= 4 ",
        "18.29",
        "F6 49, F5 19, F4 9, F3 4, F2 2, artist 917",
        "F6 50, F5 20, F4 10, F3 5, F2 2, artist 912",
        "every transaction and every currency sums to zero",
        "webhook purchase.recorded evt_",
        "webhook refund.recorded evt_",
    ):
        assert expected in out, expected
    assert out.count("signature verified") == 3  # the sale and both refunds
