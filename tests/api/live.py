"""Real servers for tests that need one: the app on 127.0.0.1 in a thread, or the
``royalties serve`` and ``royalties dev stripe`` commands as processes of their own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 (werkzeug's threaded server); yield its
    base URL, and stop the server on exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def royalties_serve(
    db_url: str,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--workers", "1"),
    log: Path | None = None,
) -> Iterator[tuple[int, dict[str, str]]]:
    """``royalties serve ARGS`` (one worker by default) on ``port`` (default: a free one)
    of 127.0.0.1; yields the port and the environment it runs with, ``env`` added to this
    process's. Its stdout and stderr go to ``log`` (default: a temporary file)."""
    with serve_process(db_url, port=port, env=env, args=args, log=log) as server:
        yield server.port, server.env


@dataclass
class Served:
    """A running ``royalties serve``: its process (the gunicorn master), port,
    environment and the file its output goes to."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the master; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextmanager
def serve_process(
    db_url: str,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--workers", "1"),
    log: Path | None = None,
) -> Iterator[Served]:
    """``royalties serve`` as ``royalties_serve`` starts it, once ``/healthz`` answers; on
    exit SIGTERMed (its process group, workers included) unless already stopped."""
    port = port or free_port()
    # Without PUBLIC_BASE_URL the server's links name the address it is bound to.
    inherited = {k: v for k, v in os.environ.items() if k != "PUBLIC_BASE_URL"}
    env = {**inherited, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1", **(env or {})}
    own_log = log is None
    if log is None:
        handle, name = tempfile.mkstemp(prefix="royalties-serve-", suffix=".log")
        os.close(handle)
        log = Path(name)
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--bind", f"127.0.0.1:{port}", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(server, port, env, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"royalties serve did not start: {served.output()}")
                time.sleep(0.1)
        yield served
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        if own_log:
            log.unlink(missing_ok=True)


@contextmanager
def dev_stripe(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``royalties dev stripe ARGS`` as a process; yields it once it printed its banner
    (up to "Stop with Ctrl-C."), with the banner's lines. Stopped with SIGTERM on exit,
    unless the test stopped it already."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "dev", "stripe", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "Stop with Ctrl-C.":
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"royalties dev stripe stopped: {lines}")
            lines.append(line.rstrip("\n"))
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)


def printed_exports(banner: list[str]) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``royalties dev stripe``'s banner."""
    pairs = (line.removeprefix("export ").split("=", 1) for line in banner)
    return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0].startswith("STRIPE_")}
