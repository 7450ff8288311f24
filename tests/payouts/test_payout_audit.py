"""A payout run is an operator action: ``POST /v1/payout-runs`` logs it under the admin's
key, ``royalties payouts run`` and ``royalties admin-key create`` under the command line,
each in the transaction that records the run (or makes the key)."""

from __future__ import annotations

from sqlalchemy import select

from royalties.keys import authenticate
from royalties.models import OperatorAction
from tests.payouts.test_payout_crash import cli_env, run_cli


def log(api) -> list[tuple[str, str | None, str | None, str]]:
    api.session.rollback()
    rows = api.session.execute(
        select(
            OperatorAction.action,
            OperatorAction.target_id,
            OperatorAction.actor_key_id,
            OperatorAction.actor_role,
        ).order_by(OperatorAction.id)
    ).all()
    api.session.rollback()
    return [tuple(row) for row in rows]


def test_a_run_through_the_api_is_logged_once_under_the_admin_key(shop):
    fan = shop.api.fan()
    shop.earn(fan, 3000)
    shop.connect(fan)
    before = log(shop.api)
    report = shop.run()
    admin = authenticate(shop.api.session, shop.api.admin.key)
    assert admin is not None
    assert log(shop.api)[len(before) :] == [
        ("payout_run.started", report["id"], admin.key_id, "admin")
    ]
    # a non-admin is refused and starts nothing
    assert shop.api.call("POST", "/v1/payout-runs", fan).status_code == 403
    assert len(log(shop.api)) == len(before) + 1


def test_the_command_line_s_run_and_new_admin_key_are_logged_as_the_cli(shop, db_url):
    env = cli_env(db_url, shop.fake.url)
    shop.api.session.rollback()  # SQLite: no transaction of ours may hold the file
    made = run_cli("admin-key", "create", env=env)
    assert made.returncode == 0, made.stderr
    ran = run_cli("payouts", "run", env=env)
    assert ran.returncode == 0, ran.stderr
    rows = log(shop.api)
    created, started = rows[-2], rows[-1]
    new_key = authenticate(shop.api.session, made.stdout.strip().splitlines()[-1])
    shop.api.session.rollback()
    assert new_key is not None
    assert created == ("key.created", new_key.key_id, None, "cli")
    assert started[0] == "payout_run.started" and started[2:] == (None, "cli")
    assert started[1] in ran.stdout
