"""``royalties payouts run`` as an operator meets it: the real CLI in a subprocess against
the fake Stripe. Its summary says who was not paid and why, the run id stands whole on
a line of its own, and the exit status is 0 only when everything payable was paid."""

from __future__ import annotations

import re

from royalties.models import PayoutRun
from tests.payouts.test_payout_crash import cli_env, run_cli


def run(shop, db_url: str, *args: str, **env: str):
    shop.api.session.rollback()  # SQLite: no transaction of ours may hold the file
    result = run_cli("payouts", "run", *args, env=cli_env(db_url, shop.fake.url, **env))
    shop.api.session.rollback()
    return result


def run_id_line(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("run id:")]
    return line.removeprefix("run id: ")


def test_a_run_that_pays_everyone_payable_exits_0_and_prints_its_run_id_whole(shop, db_url):
    paid, small, unconnected = shop.api.fan(), shop.api.fan(), shop.api.fan()
    shop.earn(paid, 3000)
    shop.earn(small, 1000)  # 500: under the minimum
    shop.earn(unconnected, 3000)
    shop.connect(paid)
    shop.connect(small)
    result = run(shop, db_url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    run_id = run_id_line(result.stdout)
    assert re.fullmatch(r"run_[0-9a-z]+", run_id)
    assert shop.api.session.get(PayoutRun, run_id) is not None
    assert re.search(r"under the minimum\s*│\s*1", result.stdout)
    assert re.search(r"no payout account\s*│\s*1", result.stdout)
    assert re.search(r"paid\s*│\s*1", result.stdout)


def test_a_run_held_back_by_the_platform_balance_exits_1_and_says_how_much(shop, db_url):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.set_balance("usd", 1000)
    result = run(shop, db_url)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "platform balance short: 1500 USD" in result.stdout
    assert shop.balance(fan) == (0, 1500, 0)
    shop.fake.set_balance("usd", 10**9)
    assert run(shop, db_url).returncode == 0
    assert shop.balance(fan) == (0, 0, 1500)


def test_a_failed_payout_makes_the_run_exit_1_and_names_it(shop, db_url):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    shop.fake.fail_next(
        "POST transfers", 400, message="No such destination", code="resource_missing"
    )
    result = run(shop, db_url)
    assert result.returncode == 1
    assert re.search(r"po_\w+: failed: declined by Stripe \(resource_missing\)", result.stdout)


def test_a_currency_s_own_minimum_overrides_min_payout(shop, db_url):
    below, above = shop.api.fan(), shop.api.fan()
    shop.earn(below, 3000)  # 1500
    shop.earn(above, 5000)  # 2500
    shop.connect(below)
    shop.connect(above)
    result = run(shop, db_url, MIN_PAYOUT_USD="2000")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert shop.balance(below) == (0, 1500, 0)
    assert shop.balance(above) == (0, 0, 2500)
    assert re.search(r"under the minimum\s*│\s*1", result.stdout)


def test_a_malformed_per_currency_minimum_is_refused_with_a_message(shop, db_url):
    result = run(shop, db_url, MIN_PAYOUT_usd="500")
    assert result.returncode != 0
    assert "MIN_PAYOUT_usd" in result.stderr and "Traceback" not in result.stderr
    result = run(shop, db_url, MIN_PAYOUT_JPY="0")
    assert result.returncode != 0 and "at least 1" in result.stderr
