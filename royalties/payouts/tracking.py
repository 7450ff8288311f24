"""A payout run's record while it runs: who started it, how far it got, and whether it
is running, finished or stopped. The dashboard starts runs in the background and reads
them here; every reader of a run's state goes through ``status``.

- Starting records the run (who asked, when) and commits *before* any work begins, so
  the run is on the record even if the process dies at once.
- One run at a time from here: starting refuses while another run is unfinished and
  has written progress within ``STALE_AFTER`` (runs of the API and the command line
  write none while running, so their start time counts). The check and the insert
  hold one lock (advisory on PostgreSQL; SQLite's write lock), so two operators pressing
  at once start one run. This is for the operator's sake, not the money's: runs that do
  overlap still pay nobody twice (``royalties/payouts/machine.py``).
- A run whose process died never finishes; once ``STALE_AFTER`` passes without
  progress it is ``stopped`` and no longer blocks a new run, which settles or retries
  whatever the dead one left open.
- Progress (``total``, ``done``, ``progress_at``) is written on a connection of its
  own, at most every ``WRITE_EVERY`` seconds, never inside a sender's transaction; the
  run's last commit writes the final figures (``royalties/payouts/runs.py``). A run that
  raised is finished with its error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from royalties import audit
from royalties.audit import Actor
from royalties.db import advisory_lock, make_sessionmaker, utcnow
from royalties.errors import RoyaltiesError, RunInProgress
from royalties.ids import new_id
from royalties.models import PayoutRun
from royalties.payments.stripe import StripeGateway
from royalties.payouts.payable import Minimums
from royalties.payouts.runs import RunReport, run_payouts
from royalties.services._tx import unit_of_work

log = logging.getLogger("royalties.payouts")

STALE_AFTER = timedelta(minutes=5)
WRITE_EVERY = 0.5  # seconds between progress writes, at most
STATUSES = ("running", "finished", "failed", "stopped")


def status(run: PayoutRun, *, now: datetime | None = None) -> str:
    """``running``; ``finished``; ``failed`` (it raised: ``error`` says why); or
    ``stopped`` (unfinished, and no progress for ``STALE_AFTER``: its process died)."""
    if run.finished_at is not None:
        return "failed" if run.error else "finished"
    last = run.progress_at or run.started_at
    return "running" if (now or utcnow()) - last < STALE_AFTER else "stopped"


def _running(now: datetime) -> ColumnElement[bool]:
    """The SQL twin of ``status(run) == "running"``."""
    last = func.coalesce(PayoutRun.progress_at, PayoutRun.started_at)
    return PayoutRun.finished_at.is_(None) & (last > now - STALE_AFTER)


def start(
    session: Session,
    *,
    requested_by: str,
    min_payout: int,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> str:
    """Record a run that ``requested_by`` asked for (audited as ``actor``'s), and
    commit; its id. Refuses (``RunInProgress``, nothing written) while another run is
    running."""
    now = now or utcnow()
    with unit_of_work(session):
        advisory_lock(session.connection(), "payout-run", "start")
        busy = session.scalars(select(PayoutRun).where(_running(now)).limit(1)).first()
        if busy is not None:
            done = f"{busy.done} of {busy.total}" if busy.total is not None else "nothing yet"
            raise RunInProgress(
                f"Run {busy.id} is still running (started {busy.started_at:%Y-%m-%d %H:%M} "
                f"UTC, {done} done): wait for it to finish before starting another."
            )
        run_id = new_id("run")
        session.add(
            PayoutRun(
                id=run_id,
                started_at=now,
                min_payout=min_payout,
                requested_by=requested_by,
                progress_at=now,
            )
        )
        audit.record(session, actor, "payout_run.started", run_id, {"min_payout": min_payout})
    return run_id


class Recorder:
    """A run's ``progress`` callback that writes ``total`` and ``done`` to its row:
    the total at once, then at most every ``every`` seconds (the run's last commit
    writes the final figures). Called under the run's lock, so never concurrently."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        *,
        every: float = WRITE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine, self._run_id, self._every, self._clock = engine, run_id, every, clock
        self.total: int | None = None
        self.done = 0
        self._written = clock()

    def __call__(self, event: str, n: int) -> None:
        if event == "total":
            self.total = n
            self._write()
        else:
            self.done += n
            if self._clock() - self._written >= self._every:
                self._write()

    def _write(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(PayoutRun)
                .where(PayoutRun.id == self._run_id, PayoutRun.finished_at.is_(None))
                .values(total=self.total, done=self.done, progress_at=utcnow())
            )
        self._written = self._clock()


def run_recorded(
    engine: Engine,
    gateway: StripeGateway,
    run_id: str,
    *,
    min_payout: int | Minimums,
    concurrency: int,
) -> RunReport | None:
    """Run the recorded run ``run_id`` to its end, writing its progress; a run that
    raises is finished with its error (logged; None returned)."""
    try:
        with make_sessionmaker(engine)() as session:
            return run_payouts(
                session,
                gateway,
                min_payout=min_payout,
                run_id=run_id,
                progress=Recorder(engine, run_id),
                concurrency=concurrency,
            )
    except Exception as exc:  # the record says why it stopped; the log has the rest
        log.exception("payout run %s stopped on an error", run_id)
        finish_with_error(engine, run_id, _words(exc))
        return None


def finish_with_error(engine: Engine, run_id: str, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(PayoutRun)
            .where(PayoutRun.id == run_id, PayoutRun.finished_at.is_(None))
            .values(finished_at=utcnow(), error=error[:500])
        )


def in_background(
    engine: Engine,
    gateway: StripeGateway,
    run_id: str,
    *,
    min_payout: int | Minimums,
    concurrency: int,
) -> threading.Thread:
    """Start ``run_recorded`` on a thread of its own (not a daemon: a clean shutdown
    lets the run finish) and return the thread."""
    thread = threading.Thread(
        target=run_recorded,
        args=(engine, gateway, run_id),
        kwargs={"min_payout": min_payout, "concurrency": concurrency},
        name=f"payout-run-{run_id}",
    )
    thread.start()
    return thread


def _words(exc: Exception) -> str:
    if isinstance(exc, RoyaltiesError):
        return exc.detail
    return f"the run stopped on an unexpected error ({type(exc).__name__}); see the server log"
