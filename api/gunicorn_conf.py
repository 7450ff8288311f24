"""gunicorn's settings for ``royalties serve`` (``gunicorn -c python:api.gunicorn_conf``).

- gunicorn's own log lines (master and workers) go through the engine's handler setup:
  redacted, with the configured format (``api.logs``).
- gunicorn's access log stays off: the app logs one line per request itself, with its
  request id, principal, duration and a path whose sign-in tokens are masked
  (``api.telemetry``), which gunicorn's access log could not give.
- Prometheus multiprocess mode: each worker writes its counters to files in
  ``PROMETHEUS_MULTIPROC_DIR`` (a directory of this instance's own, made by
  ``royalties serve``); a worker that exits is marked dead so its live gauges go.
- A worker that stops writes the clicks it queued (``royalties.clicks``) first.
- The instance's private directory is removed when the master exits.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from gunicorn import glogging

from api import logs

INSTANCE_DIR_ENV = "ROYALTIES_INSTANCE_DIR"


class Logger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger, its handlers redacting and formatting as the app's do."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                logs.install(handler)


logger_class = Logger


def worker_exit(_server: Any, _worker: Any) -> None:
    """A worker that stops writes the clicks it has queued (``royalties.clicks``)."""
    from royalties.clicks import flush_all

    flush_all()


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(_server: Any) -> None:
    instance_dir = os.environ.get(INSTANCE_DIR_ENV)
    if instance_dir:
        shutil.rmtree(instance_dir, ignore_errors=True)
