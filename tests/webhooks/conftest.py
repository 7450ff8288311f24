"""Webhook fixtures: a receiver of the suite's own on 127.0.0.1, and the real worker.

The receiver is a real HTTP server that records every request (headers and body
bytes) and answers as told: 2xx by default, a given status for the next N requests,
slowly, or not at all (stopped: connections are refused) and back again on the same
port. The worker is ``royalties worker`` as a process of its own, with short intervals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties.models import WebhookEndpoint
from royalties.webhooks.endpoints import Owner, create_endpoint
from tests.api.live import REPO, free_port

#: The worker's settings in these tests: quick rounds, quick retries, short timeouts.
FAST = {
    "WEBHOOK_SECONDS": "0.1",
    "WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1,1,1,1,1,1",
    "WEBHOOK_TIMEOUT_SECONDS": "1",
    "FAN_MAIL_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1:``port``."""

    port: int
    requests: list[Received] = field(default_factory=list)
    _answers: list[int] = field(default_factory=list)  # statuses for the next requests
    delay: float = 0.0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._answers.extend([status] * n)

    def _answer(self) -> int:
        with self._lock:
            return self._answers.pop(0) if self._answers else 204

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver._answer()
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: from now on connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ok_requests(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.ok_requests()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())
    found.start()
    yield found
    found.stop()


def endpoint_for(
    session: Session, owner: Owner, url: str, events: list[str] | None = None
) -> tuple[str, str]:
    """A new endpoint of ``owner``: its id and secret."""
    made = create_endpoint(session, owner, url=url, events=events)
    endpoint_id = made.endpoint.id  # read back: on SQLite that holds the write lock ...
    session.rollback()  # ... until the transaction ends
    return endpoint_id, made.secret


def endpoint_row(session: Session, endpoint_id: str) -> WebhookEndpoint:
    session.expire_all()
    found = session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    assert found is not None
    session.expunge(found)
    session.rollback()
    return found


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.05)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    final: str | None = None  # the whole output, once the log file is gone

    def output(self) -> str:
        if self.final is not None:
            return self.final
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@contextmanager
def worker_process(db_url: str, env: dict[str, str] | None = None) -> Iterator[Worker]:
    """``royalties worker`` on ``db_url`` with :data:`FAST` settings (and ``env``), once it
    said it started; SIGTERMed on exit unless already stopped."""
    handle, name = tempfile.mkstemp(prefix="royalties-worker-", suffix=".log")
    os.close(handle)
    log = Path(name)
    full = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", **FAST, **(env or {})}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"],
            cwd=REPO,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log)
    try:
        wait_for(
            lambda: "worker: started" in worker.output() or process.poll() is not None,
            what="the worker to start",
        )
        if process.poll() is not None:
            pytest.fail(f"royalties worker did not start: {worker.output()}")
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        worker.final = worker.output()
        log.unlink(missing_ok=True)
