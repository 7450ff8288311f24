"""Webhook deliveries per second: a backlog of events to a local receiver, 1 and 4 workers.

For each worker count (PostgreSQL by default, a fresh database each time, dropped at the
end; ``--only sqlite`` runs one worker on a temp file, the only way SQLite is run):

1. migrates with ``royalties db upgrade``, makes one admin webhook endpoint at a local
   receiver (a process of its own: ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, 204 to
   every post, counting each ``webhook-id``), and writes N events into the outbox the way
   the services do (``royalties.events.record_all``, 1,000 per transaction);
2. starts W ``royalties worker`` processes and times from their start until every
   delivery is ``delivered`` in the database (fan-out included: the events are not
   fanned out when the clock starts);
3. stops the workers (SIGTERM) and checks: every event reached the receiver, no
   delivery is left pending or failed, and how many posts were duplicates (there should
   be none in normal operation).

Run: ``.venv/bin/python bench/webhooks.py [--events 20000] [--workers 1,4]
[--only postgres|sqlite]``. Prints one line per run and a table at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _receive(port: Any, seen: Any, posts: Any, ready: Any) -> None:
    """The receiver process: count posts and distinct ids."""
    ids: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            webhook_id = self.headers.get("webhook-id") or ""
            with posts.get_lock():
                posts.value += 1
                if webhook_id not in ids:
                    ids.add(webhook_id)
                    seen.value += 1
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    port.value = server.server_port
    ready.set()
    server.serve_forever()


@dataclass
class Result:
    database: str
    workers: int
    events: int
    seconds: float
    received: int
    posts: int
    left: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def ok(self) -> bool:
        return self.received == self.events and self.left == 0


def _database(kind: str) -> tuple[str, Any]:
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="bench-webhooks-")) / "bench.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    name = f"roy_bench_wh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{PG_SERVER}/{name}", drop


def one_run(kind: str, workers: int, n: int) -> Result:
    from royalties import events
    from royalties.db import make_engine, make_sessionmaker
    from royalties.models import WebhookDelivery
    from royalties.webhooks.endpoints import Owner, create_endpoint

    url, drop = _database(kind)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_SECONDS": "0.05",
        "FAN_MAIL_SECONDS": "60",
    }
    port, seen, posts, ready = mp.Value("i", 0), mp.Value("i", 0), mp.Value("i", 0), mp.Event()
    receiver = mp.Process(target=_receive, args=(port, seen, posts, ready), daemon=True)
    receiver.start()
    ready.wait(10)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [BIN / "royalties", "db", "upgrade"], env=env, check=True, capture_output=True
        )
        engine = make_engine(url)
        with make_sessionmaker(engine)() as session:
            create_endpoint(
                session, Owner("admin", None), url=f"http://127.0.0.1:{port.value}/hooks"
            )
            for start in range(0, n, 1000):
                batch = [
                    events.Pending("purchase.recorded", {"n": i}, events.Whose())
                    for i in range(start, min(n, start + 1000))
                ]
                events.record_all(session, batch)
                session.commit()
        started = time.monotonic()
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [BIN / "royalties", "worker"],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        delivered = 0
        with engine.connect() as conn:
            while delivered < n:
                time.sleep(0.2)
                delivered = (
                    conn.scalar(select(func.count()).where(WebhookDelivery.state == "delivered"))
                    or 0
                )
                conn.rollback()
                if time.monotonic() - started > 1800:
                    raise SystemExit(f"timed out: {delivered} of {n} delivered")
        seconds = time.monotonic() - started
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        with engine.connect() as conn:
            left = (
                conn.scalar(select(func.count()).where(WebhookDelivery.state != "delivered")) or 0
            )
        engine.dispose()
        result = Result(kind, workers, n, seconds, seen.value, posts.value, left)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        receiver.terminate()
        drop()
    print(
        f"{kind}: {workers} worker(s), {n} events: {result.seconds:.1f} s, "
        f"{result.rate:.0f} deliveries/s; received {result.received} distinct, "
        f"{result.posts - result.received} duplicate post(s), {result.left} not delivered",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", default="1,4", help="worker counts, comma separated")
    parser.add_argument("--only", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args(argv)
    counts = [1] if args.only == "sqlite" else [int(w) for w in args.workers.split(",")]
    load = os.getloadavg()[0]
    print(f"load average before: {load:.2f} on {os.cpu_count()} cores", flush=True)
    results = [one_run(args.only, w, args.events) for w in counts]
    print("\n| database | workers | events | seconds | deliveries/s | duplicates | check |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.database} | {r.workers} | {r.events} | {r.seconds:.1f} | {r.rate:.0f} | "
            f"{r.posts - r.received} | {'OK' if r.ok else 'FAIL'} |"
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
