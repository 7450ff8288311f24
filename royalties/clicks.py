"""Clicks written in batches, so following a share link waits for no database.

A click is a counter (a link's stats, the click-flood signal): no money, attribution
or sign-up depends on it. At thousands of clicks a second its own transaction was most
of what a click cost (``bench/purchases.py``). So a server with ``CLICK_BATCH_SECONDS``
above 0 (the default) answers ``GET /l/<code>`` from memory (``api.clicks``, in front of
Flask):

- ``LinkTargets``: where an active link sends the client, read from the database the
  first time and then kept for ``CLICK_LINK_CACHE_SECONDS``; an unknown or disabled
  link is asked about again every time (a disabled link is never kept).
- ``ClickWriter``: each process queues its clicks; a thread of its own writes them
  every ``CLICK_BATCH_SECONDS`` (sooner once ``batch`` are queued) in one transaction
  (``services.links.record_clicks``: one INSERT; a click on a link disabled before
  the click is not written).

What that gives up, and the bound on each:

- a click reaches the database up to one interval after its redirect, so the counts
  of a link's stats and of the fraud scan lag by that much;
- a process killed outright (SIGKILL, a power cut) loses the clicks it had not written
  yet, at most one interval's worth. On a normal stop (SIGTERM, Ctrl-C, gunicorn's
  graceful restart) the process writes them before it exits;
- a link disabled through one process is forgotten there at once, but the other
  processes keep redirecting for up to the cache time (the clicks they count after the
  link was disabled are not written);
- when the database cannot be written, the clicks wait for the next round, up to
  ``max_pending`` in all; beyond that the oldest are dropped, and the log says how many.

``CLICK_BATCH_SECONDS=0`` writes each click in its own transaction before the redirect
(``services.links.resolve_click``), as the tests' apps do unless they say otherwise.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from royalties.db import reading
from royalties.services.links import click_row, link_target, record_clicks

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000  # clicks queued that wake the writer before its interval is up
DEFAULT_MAX_PENDING = 100_000  # clicks kept while the database cannot be written
DEFAULT_CACHE_ENTRIES = 100_000  # links whose targets one process keeps

_writers: weakref.WeakSet[ClickWriter] = weakref.WeakSet()


class LinkTargets:
    """Where each active link sends its clicks, kept for ``ttl`` seconds per link."""

    def __init__(
        self,
        read: Callable[[str], str | None],
        ttl: float,
        *,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._ttl, self._max, self._clock = read, ttl, max_entries, clock
        self._kept: dict[str, tuple[float, str]] = {}  # code -> (good until, target)

    def get(self, code: str) -> str | None:
        now = self._clock()
        kept = self._kept.get(code)
        if kept is not None and kept[0] > now:
            return kept[1]
        target = self._read(code)
        if target is None:
            self._kept.pop(code, None)
            return None
        if len(self._kept) >= self._max:  # full: the oldest entry makes room
            self._kept.pop(next(iter(self._kept)), None)
        self._kept[code] = (now + self._ttl, target)
        return target

    def forget(self, code: str) -> None:
        """Ask the database again next time (this process disabled the link)."""
        self._kept.pop(code, None)


class ClickWriter:
    """Clicks queued in this process and written by a thread every ``interval`` seconds
    (sooner at ``batch`` queued); at exit, what is left. See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        interval: float,
        *,
        batch: int = DEFAULT_BATCH,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._engine, self._interval = engine, interval
        self._batch, self._max_pending = batch, max_pending
        self._pid: int | None = None
        self._started = threading.Lock()
        self._reset()
        _writers.add(self)

    def _reset(self) -> None:
        """A fresh queue and no thread: at first, and in a forked child (its parent's
        queued clicks are the parent's to write)."""
        self._lock = threading.Lock()  # guards _pending
        self._writing = threading.Lock()  # one write at a time
        self._pending: list[dict[str, Any]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, click: dict[str, Any]) -> None:
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._pending.append(click)
            full = len(self._pending) >= self._batch
        if full:
            self._wake.set()

    def _start(self) -> None:
        with self._started:
            if self._pid == os.getpid():
                return
            if self._pid is not None:  # forked: nothing of the parent's is ours
                self._reset()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="click-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what is queued now; how many clicks were written. On a failure the
        clicks go back to the front of the queue for the next round."""
        with self._writing:
            with self._lock:
                clicks, self._pending = self._pending, []
            if not clicks:
                return 0
            try:
                with self._engine.begin() as conn:
                    return record_clicks(conn, clicks)
            except Exception:
                log.exception("writing %d clicks failed; they wait for the next round", len(clicks))
                with self._lock:
                    self._pending[:0] = clicks
                    dropped = len(self._pending) - self._max_pending
                    if dropped > 0:
                        del self._pending[:dropped]
                if dropped > 0:
                    log.error("dropped the %d oldest unwritten clicks (queue full)", dropped)
                return 0

    def close(self) -> None:
        """Stop the thread and write what is left (at exit)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
        if self._pid == os.getpid():
            self.flush()


def flush_all() -> None:
    """Write every writer's queued clicks and stop its thread: what a process that stops
    does last (``atexit``; gunicorn's ``worker_exit`` too)."""
    for writer in list(_writers):
        try:
            writer.close()
        except Exception:  # the log says what; the other writers still get their turn
            log.exception("writing the clicks left at exit failed")


atexit.register(flush_all)


class BatchedClicks:
    """``GET /l/<code>`` from memory: the link's target from ``LinkTargets``, the click
    queued on a ``ClickWriter``."""

    def __init__(self, engine: Engine, interval: float, cache_seconds: float) -> None:
        self.targets = LinkTargets(self._read, cache_seconds)
        self.writer = ClickWriter(engine, interval)
        self._engine = engine

    def _read(self, code: str) -> str | None:
        with reading(self._engine) as conn:
            return link_target(conn, code)

    def follow(self, code: str, ip_hash: str, user_agent: str) -> str | None:
        """Where to send a click on ``code``, the click queued; None (nothing queued)
        for a malformed, unknown or disabled link."""
        click = click_row(code, ip_hash, user_agent)
        if click is None:
            return None
        target = self.targets.get(code)
        if target is not None:
            self.writer.add(click)
        return target
