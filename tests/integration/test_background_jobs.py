"""The worker's background jobs, each run directly against the real database: they do
their work and say how much; a periodic job runs once per due time, however many
workers claim it; a cron schedule is due at its next matching time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from royalties import schedule
from royalties.background import jobs, refresh_insights
from royalties.db import make_sessionmaker, utcnow
from royalties.errors import NotConfigured
from royalties.fraud.detectors import FraudConfig
from royalties.models import Event, FraudSignal, InsightsCache, Reward, WorkerSchedule
from tests.conftest import create_test_app
from tests.helpers import ApiDriver, at_once, buy, share

FRAUD = FraudConfig(click_min=5)


def job(config: dict[str, Any], name: str) -> Any:
    return next(j for j in jobs(config) if j.name == name)


def read(session: Any, query: Any) -> list[Any]:
    rows = list(session.execute(query).all())
    session.rollback()  # SQLite: release the write lock the read took
    return rows


@pytest.fixture
def sold(api: Any) -> dict[str, Any]:
    artist, shop = api.artist(), api.storefront()
    ann = api.fan("ann")
    song = api.content(artist)
    code = share(api, ann, song["id"])
    for i in range(2):
        buy(api, shop, song, {"email": f"j{i}@buyers.test"}, share_code=code)
    return {"artist": artist, "shop": shop, "ann": ann, "song": song, "code": code}


def test_the_mature_job_makes_due_rewards_available_and_says_how_many(engine, session, sold):
    now = utcnow()
    mature = job({}, "rewards.mature")
    assert mature.every == timedelta(minutes=1)
    assert mature.run(engine, {}, now) == 0  # nothing due yet (the plan holds rewards)
    session.execute(update(Reward).values(available_at=now - timedelta(seconds=1)))
    session.commit()
    assert mature.run(engine, {}, now + timedelta(minutes=1)) == 2
    states = read(session, select(Reward.state))
    assert [s for (s,) in states] == ["available", "available"]
    types = read(session, select(Event.type).where(Event.type == "reward.available"))
    assert len(types) == 2
    assert mature.run(engine, {}, now + timedelta(minutes=2)) == 0


@pytest.mark.parametrize("runner", ["worker job", "royalties fraud scan"])
def test_the_fraud_scan_job_finds_the_click_flood_the_cli_scan_finds(
    runner, engine, db_url, session, monkeypatch
):
    api = ApiDriver(create_test_app(engine, db_url, FRAUD=FRAUD).test_client(), session)
    item = api.content(api.artist())
    flooded = share(api, api.fan(), item["id"])
    quiet = share(api, api.fan(), item["id"])
    for code, clicks in ((flooded, 6), (quiet, 2)):
        for _ in range(clicks):
            answer = api.client.get(f"/l/{code}", environ_base={"REMOTE_ADDR": "192.0.2.50"})
            assert answer.status_code == 302
    if runner == "worker job":
        config = {"FRAUD": FRAUD, "FRAUD_SCAN_MINUTES": 15}
        scan = job(config, "fraud.scan")
        assert scan.every == timedelta(minutes=15)
        assert scan.run(engine, config, utcnow()) == 1
    else:
        from api.cli import main

        monkeypatch.setenv("DATABASE_URL", db_url)
        monkeypatch.setenv("FRAUD_CLICK_MIN", "5")
        result = CliRunner().invoke(main, ["fraud", "scan"])
        assert result.exit_code == 0, result.output
        assert "1 click flood(s)" in result.output
    found = read(session, select(FraudSignal.kind, FraudSignal.subject_id))
    assert found == [("click_flood", flooded)]


def test_the_insights_job_refreshes_the_artists_whose_sales_changed(api, engine, session, sold):
    now = utcnow()
    assert refresh_insights(engine, {}, now) == 1  # never computed
    [(count,)] = read(session, select(InsightsCache.purchase_count))
    assert count == 2
    assert refresh_insights(engine, {}, now) == 0  # still current
    buy(api, sold["shop"], sold["song"], {"email": "j9@buyers.test"}, share_code=sold["code"])
    assert refresh_insights(engine, {}, now) == 1
    [(count,)] = read(session, select(InsightsCache.purchase_count))
    assert count == 3
    # the page is then served from the cache the job wrote
    page = api.ok("GET", f"/v1/artists/{sold['artist'].id}/insights", sold["artist"])
    assert page["computed_at"] == now.isoformat()


def test_an_interval_job_runs_once_per_due_time(session):
    every = schedule.interval(timedelta(minutes=15))
    t0 = datetime(2026, 12, 16, 10, 0, tzinfo=UTC)
    assert schedule.claim(session, "fraud.scan", every, t0)  # due at once the first time
    assert not schedule.claim(session, "fraud.scan", every, t0)
    assert not schedule.claim(session, "fraud.scan", every, t0 + timedelta(minutes=14))
    assert schedule.claim(session, "fraud.scan", every, t0 + timedelta(minutes=15, seconds=3))
    [(due,)] = read(session, select(WorkerSchedule.next_due_at))
    assert due == t0 + timedelta(minutes=30)  # from the due time, so it does not drift
    # a worker that was away for hours runs once, not once per missed interval
    later = t0 + timedelta(hours=5)
    assert schedule.claim(session, "fraud.scan", every, later)
    assert not schedule.claim(session, "fraud.scan", every, later + timedelta(minutes=1))


def test_a_cron_schedule_is_due_at_its_next_matching_time(session):
    mondays = "0 6 * * 1"
    wednesday = datetime(2026, 12, 16, 10, 0, tzinfo=UTC)
    monday = datetime(2026, 12, 21, 6, 0, tzinfo=UTC)
    assert schedule.next_after(mondays, wednesday) == monday
    assert schedule.next_after(mondays, monday) == monday + timedelta(days=7)
    assert schedule.next_after("30 * * * *", wednesday) == wednesday + timedelta(minutes=30)
    assert schedule.is_cron(mondays) and not schedule.is_cron("every monday")
    assert not schedule.is_cron("0 6 * *")

    assert not schedule.claim(session, "payouts.scheduled", mondays, wednesday)  # not at once
    assert not schedule.claim(session, "payouts.scheduled", mondays, monday - timedelta(seconds=1))
    assert schedule.claim(session, "payouts.scheduled", mondays, monday + timedelta(seconds=20))
    assert not schedule.claim(session, "payouts.scheduled", mondays, monday + timedelta(minutes=1))
    # an edited schedule counts from its own next time
    daily = "0 6 * * *"
    tuesday = monday + timedelta(days=1)
    assert not schedule.claim(session, "payouts.scheduled", daily, monday + timedelta(hours=1))
    [(due, text)] = read(session, select(WorkerSchedule.next_due_at, WorkerSchedule.schedule))
    assert (due, text) == (tuesday, daily)


def test_the_job_list_follows_the_settings():
    names = [j.name for j in jobs({})]
    assert names == ["fan_mail.send", "rewards.mature", "fraud.scan", "insights.refresh"]
    assert job({"FRAUD_SCAN_MINUTES": 5}, "fraud.scan").every == timedelta(minutes=5)
    with pytest.raises(NotConfigured, match="not a cron expression"):
        jobs({"PAYOUT_SCHEDULE": "mondays", "STRIPE_API_KEY": "sk_test_x"})
    with pytest.raises(NotConfigured, match="STRIPE_API_KEY"):
        jobs({"PAYOUT_SCHEDULE": "0 6 * * 1"})
    scheduled = job(
        {"PAYOUT_SCHEDULE": "0 6 * * 1", "STRIPE_API_KEY": "sk_test_x"}, "payouts.scheduled"
    )
    assert scheduled.every == timedelta(minutes=1)


def claims_at_once(engine: Any, job_name: str, when: str, now: datetime, n: int) -> list[Any]:
    """``n`` workers claiming the same due time at the same moment, each on its own
    connection: what each claim answered."""
    factory = make_sessionmaker(engine)

    def claim() -> bool:
        with factory() as session:
            return schedule.claim(session, job_name, when, now)

    return sorted(at_once(n, claim), key=repr)


@pytest.mark.postgres
def test_two_workers_claiming_the_same_due_time_at_once_run_the_job_once(engine):
    every = schedule.interval(timedelta(minutes=1))
    t0 = datetime(2026, 12, 16, 10, 0, tzinfo=UTC)
    for round_ in range(10):
        now = t0 + timedelta(minutes=round_)
        assert claims_at_once(engine, "rewards.mature", every, now, 4) == [
            False,
            False,
            False,
            True,
        ], f"round {round_}"


@pytest.mark.postgres
def test_two_workers_running_a_job_at_once_do_its_work_once(engine, session, sold):
    now = utcnow()
    session.execute(update(Reward).values(available_at=now - timedelta(seconds=1)))
    session.commit()
    mature = job({}, "rewards.mature")
    assert sorted(at_once(2, lambda: mature.run(engine, {}, now)), key=repr) == [0, 2]
