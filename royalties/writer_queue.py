"""SQLite writers wait their turn in a queue instead of in SQLite's busy handler.

SQLite lets one transaction write at a time. A writer that finds the write lock taken
gets ``SQLITE_BUSY`` and its busy handler sleeps and tries again: 1, 2, 5, 10, 15, 20,
25, 25, 25, 50, 50, 100 ms, then 100 ms at a time. The lock is usually free again after
a millisecond or two, but a waiter sleeps on, and under a few concurrent writers (the
gunicorn workers) a sixth of a purchase's wall time went to those sleeps: every
millisecond added while holding the lock cost far more than a millisecond of throughput.

So each transaction that takes the write lock (``BEGIN IMMEDIATE``) first joins a queue
for it, and leaves the queue when the transaction ends (commit, rollback or close). A
writer waiting in the queue is woken by the kernel the moment the one before it leaves.

- Across processes the queue is an exclusive ``flock`` of the file ``<database>-writers``
  beside the database. The kernel releases it when the process dies, so a killed
  process never blocks the others.
- Within a process the threads queue on a lock first, so one file descriptor serves
  the process (``flock`` locks belong to the open file, not to the thread).
- The wait is bounded by the engine's busy timeout (``connect_args``' ``timeout``).
  ``flock`` itself cannot time out, so a contended wait happens in a keeper thread
  while the writer waits, with a timeout, for the keeper to say it holds the lock. A
  writer that gives up raises ``sqlite3.OperationalError("database is locked ...")``,
  as SQLite itself would.
- A thread that already holds the queue through one connection and begins a write on
  another does not queue again (it would wait for itself); that connection waits in
  SQLite's busy handler as before.
- A transaction ended by SQL (``COMMIT`` sent as a statement) leaves the queue only at
  the connection's next commit, rollback or close; SQLAlchemy always ends its own.
- The queue only orders writers; SQLite's own lock still decides. A writer that does
  not queue (another program, the ``sqlite3`` shell) is as safe as before.
- After ``fork`` the child starts with a queue of its own: it holds nothing its parent
  held and opens its own file descriptor.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

WRITERS_SUFFIX = "-writers"


class WriterQueue:
    """The queue of writers for one database file."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path + WRITERS_SUFFIX
        self._reset()

    def _reset(self) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        # Which connection's transaction holds the queue (its id: a connection dropped
        # without close() is collected, and its finalizer leaves for it).
        self._holder: int | None = None
        self._holder_thread: int | None = None
        self._holder_finalizer: weakref.finalize[Any, Any] | None = None
        self._keeper: _Keeper | None = None
        self._unusable = False

    def join(self, connection: Any, timeout: float) -> bool:
        """Wait for the writers before ``connection``; True when it now holds the queue
        (and must ``leave``), False when it does not queue (see the module docstring)."""
        if self._holder == id(connection):
            return False  # still holds it: its last transaction ended in SQL, not commit()
        if self._holder_thread == threading.get_ident():
            return False  # this thread holds it through another connection
        fd = self._file()
        if fd is None:
            return False
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            raise _locked(timeout)
        try:
            if not _try_flock(fd):
                keeper = self._keeper
                if keeper is None or not keeper.is_alive():
                    keeper = self._keeper = _Keeper(fd)
                if not keeper.acquire(max(0.0, deadline - time.monotonic())):
                    raise _locked(timeout)
        except BaseException:
            self._thread_lock.release()
            raise
        self._holder = id(connection)
        self._holder_thread = threading.get_ident()
        self._holder_finalizer = weakref.finalize(connection, self._leave, id(connection))
        return True

    def leave(self, connection: Any) -> None:
        """``connection``'s transaction ended: the next writer's turn."""
        self._leave(id(connection))

    def _leave(self, connection_id: int) -> None:
        if self._holder != connection_id:
            return
        if self._holder_finalizer is not None:
            self._holder_finalizer.detach()
        self._holder = self._holder_thread = self._holder_finalizer = None
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def _file(self) -> int | None:
        if self._fd is None and not self._unusable:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                # A read-only directory, say: SQLite's busy handler still orders writers.
                log.warning("SQLite writers will not queue: cannot open %s: %s", self.path, exc)
                self._unusable = True
        return self._fd

    def _after_fork_in_child(self) -> None:
        fd = self._fd
        self._reset()
        if fd is not None:
            # The parent's descriptor shares the parent's lock: never unlock through it.
            os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _locked(timeout: float) -> sqlite3.OperationalError:
    return sqlite3.OperationalError(
        f"database is locked (waited {timeout:g} s for the other writers' transactions)"
    )


class _Keeper(threading.Thread):
    """Waits in a blocking ``flock`` for one writer at a time, so that the writer itself
    can wait with a timeout. Each wait is a numbered request; the keeper locks once per
    request, and a writer that gave up by the time the lock came is not handed it: the
    keeper unlocks at once."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="sqlite-writer-queue", daemon=True)
        self._fd = fd
        self._state = threading.Condition()
        self._requests = 0  # numbered waits so far
        self._wanted: int | None = None  # the request a writer is waiting on
        self._granted: int | None = None  # the last request the keeper locked for
        self._served = 0  # the last request the keeper locked for or saw given up
        self.start()

    def acquire(self, timeout: float) -> bool:
        with self._state:
            self._requests += 1
            request = self._wanted = self._requests
            self._state.notify_all()
            granted = self._state.wait_for(lambda: self._granted == request, timeout)
            self._wanted = None  # served, or given up: the keeper unlocks if it comes late
            return granted

    def run(self) -> None:
        while True:
            with self._state:
                self._state.wait_for(self._new_request)
                self._served = self._requests
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            with self._state:
                if self._wanted is not None:  # the writer holding the thread lock waits
                    self._granted = self._served = self._wanted
                    self._state.notify_all()
                    continue
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # the writer gave up meanwhile

    def _new_request(self) -> bool:
        return self._wanted is not None and self._wanted > self._served


_queues: dict[str, WriterQueue] = {}
_queues_lock = threading.Lock()


def queue_for(database_path: str) -> WriterQueue:
    """The one queue of this process for the database at ``database_path``."""
    key = os.path.realpath(database_path)
    with _queues_lock:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = WriterQueue(key)
        return queue


def _after_fork_in_child() -> None:
    global _queues_lock
    _queues_lock = threading.Lock()
    for queue in _queues.values():
        queue._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def begin_write(connection: QueuedConnection, execute: Callable[[str], Any]) -> None:
    """Send ``BEGIN IMMEDIATE`` through ``execute`` once the writers ahead of
    ``connection`` in its queue are done; ``sqlite3.OperationalError`` after its
    ``writer_timeout``."""
    queue = connection.writer_queue
    joined = queue is not None and queue.join(connection, connection.writer_timeout)
    try:
        execute("BEGIN IMMEDIATE")
    except BaseException:
        if joined and queue is not None:
            queue.leave(connection)
        raise


class QueuedConnection(sqlite3.Connection):
    """A ``sqlite3`` connection that leaves its writer queue when its transaction ends.
    ``royalties.db`` makes SQLite connections with this class (``factory``), sets their
    ``writer_queue`` and begins each write transaction with ``begin_write``."""

    writer_queue: WriterQueue | None = None
    writer_timeout: float = 30.0  # seconds; the engine's busy timeout

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._left_transaction()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._left_transaction()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.writer_queue is not None:
                self.writer_queue.leave(self)

    def _left_transaction(self) -> None:
        queue = self.writer_queue
        if queue is not None and not self.in_transaction:
            queue.leave(self)
