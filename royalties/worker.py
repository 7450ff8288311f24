"""``royalties worker``: one long-running process for all the engine's background work.

The jobs (:func:`all_jobs`): ``webhooks.fan_out`` (new events become deliveries and
fan mail, ``royalties.webhooks.fanout``), ``webhooks.deliver`` (signed posts with
retries, ``royalties.webhooks.delivery``), and the jobs of ``royalties.background``
(fan mail, maturing, the fraud scan, stale insights, scheduled payouts).

The loop (:func:`run`) runs each job when it is due, one after another, and sleeps
until the next is due. A job that raises is logged and tried again at its next due
time: a database that is away for a moment does not end the worker. Stopping (SIGTERM
or SIGINT, which set ``stop``) ends the loop after the job in hand; the webhook batches
in flight are finished and recorded; then the process exits 0. A SIGKILL loses nothing
either: every job leases or claims its work in the database before doing it, and what
a killed worker had leased is taken up again when the lease runs out.

With several workers (PostgreSQL) they share the work: fan-out with ``FOR UPDATE SKIP
LOCKED``, deliveries and mail by leases, the periodic jobs once per due time
(``royalties.schedule``). On SQLite, run one worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from royalties import background
from royalties.db import utcnow
from royalties.webhooks import Deliverer, Settings, fan_out
from royalties.worker_jobs import Job

log = logging.getLogger("royalties.worker")

#: How often the webhook jobs look for work (``WEBHOOK_SECONDS``), by default.
WEBHOOK_SECONDS = 1.0
#: The longest the loop sleeps, so a changed clock or a stop is seen soon.
MAX_NAP = 1.0


def webhook_jobs(config: Mapping[str, Any]) -> tuple[list[Job], Deliverer]:
    """The fan-out and delivery jobs, and the deliverer (to stop at the end)."""
    every = timedelta(seconds=float(config.get("WEBHOOK_SECONDS") or WEBHOOK_SECONDS))
    deliverer = Deliverer(Settings.from_config(config))
    return [
        Job("webhooks.fan_out", every, fan_out),
        Job("webhooks.deliver", every, deliverer.run),
    ], deliverer


def all_jobs(config: Mapping[str, Any]) -> tuple[list[Job], Deliverer]:
    """Every job ``config`` asks for (NotConfigured for a bad ``PAYOUT_SCHEDULE``)."""
    jobs, deliverer = webhook_jobs(config)
    return jobs + background.jobs(config), deliverer


def run(
    engine: Engine,
    config: Mapping[str, Any],
    jobs: Sequence[Job],
    *,
    stop: threading.Event,
    once: bool = False,
    clock: Callable[[], datetime] = utcnow,
    said: Callable[[str, int], None] | None = None,
) -> None:
    """Run ``jobs`` until ``stop`` is set (``once``: one round of each, then return).
    ``said(job, n)`` hears each round that did something."""
    due = {job.name: clock() for job in jobs}
    while not stop.is_set():
        for job in jobs:
            if stop.is_set():
                break
            now = clock()
            if now < due[job.name] and not once:
                continue
            due[job.name] = now + job.every
            try:
                done = job.run(engine, config, now)
            except Exception as exc:
                log.error("job %s failed: %s: %s", job.name, type(exc).__name__, exc)
                log.debug("job %s failed", job.name, exc_info=True)
                continue
            if done:
                log.info("job %s: %d done", job.name, done)
                if said is not None:
                    said(job.name, done)
        if once:
            return
        nap = (min(due.values()) - clock()).total_seconds()
        stop.wait(min(max(nap, 0.05), MAX_NAP))


def wait_idle(deliverer: Deliverer, timeout: float) -> bool:
    """Wait until the deliverer has no batch in flight; False when ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while not deliverer.idle():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
