"""Periodic jobs run once per due time, however many workers there are.

``worker_schedule`` holds each job's next due time. :func:`claim` moves it on with one
``UPDATE .. WHERE job = :job AND next_due_at <= :now`` and commits: when several workers
claim the same due time at once, the database lets exactly one update match (on
PostgreSQL the others wait for its row lock, then find the new time in the future; on
SQLite writers take turns). Only the worker whose claim matched runs the job.

A schedule is either a fixed interval (``every 900s``: due at once the first time, then
every interval after the time it was due, so it does not drift, but never catching up
on runs missed while no worker ran) or a cron expression (``0 6 * * 1``, evaluated in
UTC with ``croniter``: due at the next matching minute, never at once on first sight).
A changed schedule (an edited ``PAYOUT_SCHEDULE``) recomputes the next due time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from croniter import croniter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from royalties.db import insert_or_ignore, table
from royalties.models import WorkerSchedule
from royalties.services._tx import unit_of_work


def interval(every: timedelta) -> str:
    """The schedule text of a fixed interval."""
    return f"every {int(every.total_seconds())}s"


def is_cron(expression: str) -> bool:
    """A five-field cron expression ``croniter`` accepts."""
    return len(expression.split()) == 5 and croniter.is_valid(expression)


def next_after(schedule: str, now: datetime, due: datetime | None = None) -> datetime:
    """The due time after ``now`` (``due``: the time just claimed, for an interval)."""
    if schedule.startswith("every "):
        step = timedelta(seconds=int(schedule.removeprefix("every ").removesuffix("s")))
        following = (due or now) + step
        return following if following > now else now + step
    return croniter(schedule, now.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def _first_due(schedule: str, now: datetime) -> datetime:
    return now if schedule.startswith("every ") else next_after(schedule, now)


def claim(session: Session, job: str, schedule: str, now: datetime) -> bool:
    """Claim the due time of ``job`` at ``now``: True for exactly one caller per due time
    (that caller runs the job). Commits."""
    with unit_of_work(session):
        session.execute(
            insert_or_ignore(session, table(WorkerSchedule)).values(
                job=job, schedule=schedule, next_due_at=_first_due(schedule, now)
            )
        )
        stored, due = session.execute(
            select(WorkerSchedule.schedule, WorkerSchedule.next_due_at).where(
                WorkerSchedule.job == job
            )
        ).one()
        if stored != schedule:
            due = _first_due(schedule, now)
            session.execute(
                update(WorkerSchedule)
                .where(WorkerSchedule.job == job)
                .values(schedule=schedule, next_due_at=due)
            )
        if due > now:
            return False
        # The WHERE is evaluated again after a concurrent claim's commit: one matches.
        won = session.execute(
            update(WorkerSchedule)
            .where(WorkerSchedule.job == job, WorkerSchedule.next_due_at <= now)
            .values(next_due_at=next_after(schedule, now, due), last_run_at=now)
            .returning(WorkerSchedule.job)
        ).first()
    return won is not None
