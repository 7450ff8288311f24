"""The operator's payout runs in the dashboard, through the Flask test client against
the fake Stripe: who may start and see runs, one run at a time, a run that stopped, a
run that raised, and the progress a run writes (throttled) to its row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from api.web.payout_runs import THREADS
from royalties.db import utcnow
from royalties.keys import authenticate
from royalties.models import PayoutRun
from royalties.payouts import tracking
from tests.payouts.conftest import Shop
from tests.web.conftest import Browser


def wait_for_runs(app) -> None:
    """Join the runs this app started on background threads."""
    for thread in app.extensions.get(THREADS, []):
        thread.join(30)
        assert not thread.is_alive(), "the payout run did not finish"


def runs(session) -> list[PayoutRun]:
    """The runs, detached as read: no transaction of ours stays open to hold SQLite's
    write lock (a rollback would expire them, and reading one would open another)."""
    session.rollback()
    rows = list(session.scalars(select(PayoutRun).order_by(PayoutRun.started_at)))
    session.expunge_all()
    session.rollback()
    return rows


def run_count(session) -> int:
    session.rollback()
    n = session.scalar(select(func.count()).select_from(PayoutRun))
    session.rollback()
    return int(n or 0)


@pytest.fixture
def app(shop: Shop):
    return shop.api.client.application


@pytest.fixture
def admin(app, shop: Shop) -> Browser:
    browser = Browser(app)
    browser.sign_in(shop.api.admin.key)
    return browser


def start(browser: Browser):
    browser.get("/dashboard/admin/payouts")
    return browser.post("/dashboard/admin/payouts")


def test_the_operator_starts_a_run_that_pays_in_the_background_and_records_who_asked(
    shop: Shop, app, admin: Browser
):
    ann = shop.api.fan("ann")
    shop.earn(ann, 3000)
    account = shop.connect(ann)
    started = start(admin)
    assert started.status_code == 303
    run_id = started.headers["Location"].rsplit("/", 1)[1]
    wait_for_runs(app)
    (run,) = runs(shop.api.session)
    assert run.id == run_id and run.finished_at is not None and run.error is None
    assert (run.total, run.done) == (1, 1)
    admin_key = authenticate(shop.api.session, shop.api.admin.key)
    shop.api.session.rollback()
    assert admin_key is not None and run.requested_by == admin_key.key_id
    (transfer,) = [t for t in shop.fake.transfers if t["destination"] == account]
    page = admin.get(f"/dashboard/admin/payouts/runs/{run_id}").get_data(as_text=True)
    assert "finished" in page and "1 of 1 done" in page
    assert f'data-fan="{ann.id}"' in page and transfer["id"] in page and "15.00 USD" in page
    assert "payout_run.js" not in page and 'http-equiv="refresh"' not in page  # over
    listing = admin.get("/dashboard/admin/payouts").get_data(as_text=True)
    assert f'data-run="{run_id}"' in listing
    assert '<td class="num" data-count="paid">1</td>' in listing
    progress = admin.get(f"/dashboard/admin/payouts/runs/{run_id}/progress.json").get_json()
    assert progress == {"id": run_id, "status": "finished", "total": 1, "done": 1, "error": None}


@pytest.mark.parametrize("who", ["fan", "artist"])
def test_a_fan_or_an_artist_may_neither_start_nor_see_runs(shop: Shop, app, admin, who):
    shop.api.fan()
    start(admin)
    wait_for_runs(app)
    (run,) = runs(shop.api.session)
    person = Browser(app)
    person.sign_in((shop.api.fan() if who == "fan" else shop.artist).key)
    person.get(f"/dashboard/{'fans' if who == 'fan' else 'artists'}/x")  # a CSRF token
    for path in (
        "/dashboard/admin/payouts",
        f"/dashboard/admin/payouts/runs/{run.id}",
        f"/dashboard/admin/payouts/runs/{run.id}/progress.json",
    ):
        response = person.get(path)
        assert response.status_code == 403, path
        assert "payout runs are the operator" in response.get_data(as_text=True)
    assert person.post("/dashboard/admin/payouts").status_code == 403
    assert run_count(shop.api.session) == 1


def test_a_run_page_for_an_unknown_id_is_a_human_404(admin):
    response = admin.get("/dashboard/admin/payouts/runs/run_nope")
    text = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "There is no payout run run_nope." in text and "Traceback" not in text


def test_starting_without_the_form_s_csrf_token_starts_nothing(shop: Shop, admin):
    admin.get("/dashboard/admin/payouts")
    assert admin.post("/dashboard/admin/payouts", csrf=False).status_code == 400
    assert run_count(shop.api.session) == 0


def test_starting_while_a_run_is_running_is_refused_and_a_stopped_one_blocks_nothing(
    shop: Shop, app, admin
):
    session = shop.api.session
    now = utcnow()
    session.add(PayoutRun(id="run_busy", min_payout=1000, started_at=now, progress_at=now))
    session.commit()
    refused = start(admin)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "Run run_busy is still running" in text and "wait for it to finish" in text
    assert run_count(session) == 1 and app.extensions.get(THREADS, []) == []
    running = admin.get("/dashboard/admin/payouts/runs/run_busy").get_data(as_text=True)
    assert "nothing yet" not in running and "counting what to pay" in running
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in running  # no JS
    assert "payout_run.js" in running

    # Its process died: no progress for longer than STALE_AFTER.
    stale = now - tracking.STALE_AFTER - timedelta(seconds=1)
    session.execute(update(PayoutRun).values(started_at=stale, progress_at=stale))
    session.commit()
    page = admin.get("/dashboard/admin/payouts/runs/run_busy").get_data(as_text=True)
    assert "stopped" in page and "the process running it has stopped" in page
    assert start(admin).status_code == 303
    wait_for_runs(app)
    assert [tracking.status(r) for r in runs(session)] == ["stopped", "finished"]


def test_a_run_that_raises_is_finished_with_its_error(shop: Shop, app, admin):
    shop.fake.fail_next("balance", 401, message="Invalid API Key provided")
    started = start(admin)
    wait_for_runs(app)
    (run,) = runs(shop.api.session)
    assert run.finished_at is not None and run.error
    assert tracking.status(run) == "failed"
    page = admin.get(started.headers["Location"]).get_data(as_text=True)
    assert "The run stopped:" in page and "Traceback" not in page


def test_progress_is_written_at_once_for_the_total_then_at_most_every_half_second(
    shop: Shop, engine
):
    session = shop.api.session
    run_id = tracking.start(session, requested_by="key_x", min_payout=1000)
    clock = [100.0]
    record = tracking.Recorder(engine, run_id, every=0.5, clock=lambda: clock[0])

    def row():
        got = runs(session)[0]
        return got.total, got.done

    record("total", 5)
    assert row() == (5, 0)
    record("done", 1)
    record("done", 1)
    assert row() == (5, 0)  # within half a second of the last write
    clock[0] += 0.6
    record("done", 1)
    assert row() == (5, 3)
