"""``royalties serve`` instances that coexist on one host and stop cleanly.

Real servers (gunicorn, two workers each) with the same HOME and XDG_RUNTIME_DIR, where
gunicorn would put its one control socket per user by default."""

from __future__ import annotations

import re
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from royalties.models import Click, Purchase
from royalties.services.accounts import create_admin_key
from tests.api.live import Served, free_port, serve_process

WORKERS = ("--workers", "2", "--graceful-timeout", "20")


def shared_home(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    return {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}


def control_socket(served: Served) -> Path:
    [path] = re.findall(r"Control socket listening at (\S+)", served.output())
    return Path(path)


def answers(served: Served) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{served.port}/healthz", timeout=5).ok
    except requests.ConnectionError:
        return False


def test_two_servers_on_one_host_share_no_file_and_one_stopping_leaves_the_other(db_url, tmp_path):
    env = shared_home(tmp_path)
    with (
        serve_process(db_url, env=env, args=WORKERS, log=tmp_path / "a.log") as a,
        serve_process(db_url, env=env, args=WORKERS, log=tmp_path / "b.log") as b,
    ):
        socket_a, socket_b = control_socket(a), control_socket(b)
        assert socket_a != socket_b and socket_a.is_socket() and socket_b.is_socket()
        assert socket_a.parent.name.startswith("royalties-serve-")
        assert list((tmp_path / "run").iterdir()) == []  # gunicorn's default not used
        assert not (tmp_path / "home" / ".gunicorn").exists()
        assert a.stop() == 0
        assert not socket_a.parent.exists()  # the instance's directory went with it
        assert answers(b) and socket_b.is_socket()
        assert "Handling signal: term" in a.output()
        assert b.stop() == 0
        assert not socket_b.parent.exists()


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_metrics_bind_serves_every_workers_counts_there_and_nothing_on_the_main_port(
    db_url, tmp_path
):
    metrics_port = free_port()
    env = {**shared_home(tmp_path), "METRICS_BIND": f"127.0.0.1:{metrics_port}"}
    with serve_process(db_url, env=env, args=WORKERS) as served:
        main = f"http://127.0.0.1:{served.port}"
        # A sync worker that accepted a connection waits for its request and serves no
        # other: with one connection held half-sent, the other worker answers the 39
        # requests, then the held one is finished. Both answer, whatever the kernel's
        # choice of who accepts.
        held = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        held.sendall(b"GET /v1/openapi-nope HTTP/1.1\r\n")
        for _ in range(39):
            with requests.Session() as once:
                assert once.get(f"{main}/v1/openapi-nope", timeout=5).status_code == 404
        held.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        with held, held.makefile("rb") as answer:
            assert answer.readline().split()[1] == b"404"
            answer.read()  # to the close: the request is logged before we look
        pids = set()
        for line in served.output().splitlines():
            found = re.search(r"\[(\d+)\] INFO royalties.request", line)
            if found:
                pids.add(found.group(1))
        assert len(pids) == 2, "both workers answered"
        page = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert page.status_code == 200
        route = {"route": "<unmatched>", "status": "404"}
        assert _sample(page.text, "royalties_http_requests_total", **route) == 40
        assert "royalties_rewards" in page.text
        # The main listener has no /metrics, even for an admin; the metrics one has no API.
        assert requests.get(f"{main}/metrics", timeout=5).status_code == 404
        other = requests.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5)
        assert other.status_code == 404
        assert served.stop() == 0


def test_a_sigterm_during_a_burst_of_purchases_loses_no_acknowledged_one(
    db_url, engine, session, tmp_path
):
    admin = create_admin_key(session)
    session.close()
    with serve_process(db_url, env=shared_home(tmp_path), args=WORKERS) as served:
        base = f"http://127.0.0.1:{served.port}"

        def post(path: str, key: str, body: Any, **headers: str) -> Any:
            headers["Authorization"] = f"Bearer {key}"
            return requests.post(base + path, json=body, headers=headers, timeout=30)

        artist = post("/v1/artists", admin, {"name": "Ada"}).json()
        shop = post("/v1/storefronts", admin, {"name": "S", "base_url": "https://s.io"}).json()
        item = {"title": "S", "kind": "track", "price": 500, "currency": "USD"}
        item = post("/v1/content", artist["api_key"], {**item, "storefront_url": "https://s.io/1"})
        content_id = item.json()["id"]
        acknowledged: list[str] = []
        started = threading.Event()
        lock = threading.Lock()

        def client(n: int) -> None:
            for i in range(10_000):
                sale = {
                    "content_id": content_id,
                    "amount": 500,
                    "currency": "USD",
                    "buyer": {"email": f"c{n}-{i}@x.io"},
                }
                key = f"burst-{n}-{i}-{secrets.token_hex(4)}"
                try:
                    answer = post(
                        "/v1/purchases", shop["api_key"], sale, **{"Idempotency-Key": key}
                    )
                except requests.RequestException:
                    return  # the server stopped listening
                if answer.status_code != 201:
                    return
                with lock:
                    acknowledged.append(answer.json()["id"])
                    if len(acknowledged) >= 20:
                        started.set()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        assert started.wait(60), "the burst did not get going"
        status = served.stop()
        for thread in threads:
            thread.join(timeout=60)
    assert status == 0
    assert len(acknowledged) == len(set(acknowledged)) >= 20
    with engine.connect() as conn:
        found = conn.scalar(
            select(func.count()).select_from(Purchase).where(Purchase.id.in_(acknowledged))
        )
    assert found == len(acknowledged)


def test_clicks_queued_in_each_worker_are_written_when_the_server_stops(
    db_url, engine, session, tmp_path
):
    """Batched clicks (the server's default), rounds an hour apart: none is written while
    it runs, every answered click is once SIGTERM stops its two workers."""
    admin = create_admin_key(session)
    session.close()
    env = {**shared_home(tmp_path), "CLICK_BATCH_SECONDS": "3600"}
    with serve_process(db_url, env=env, args=WORKERS) as served:
        base = f"http://127.0.0.1:{served.port}"

        def post(path: str, key: str | None, body: Any) -> Any:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            answer = requests.post(base + path, json=body, headers=headers, timeout=30)
            assert answer.status_code == 201, answer.text
            return answer.json()

        artist = post("/v1/artists", admin, {"name": "Ada"})
        item = {"title": "S", "kind": "track", "price": 500, "currency": "USD"}
        item = post("/v1/content", artist["api_key"], {**item, "storefront_url": "https://s.io/1"})
        fan = post("/v1/fans", None, {"handle": "ann"})
        code = post("/v1/share-links", fan["api_key"], {"content_id": item["id"]})["code"]
        answered: list[int] = []

        def client() -> None:
            with requests.Session() as http:  # keep-alive: the requests spread over workers
                for _ in range(50):
                    answer = http.get(f"{base}/l/{code}", allow_redirects=False, timeout=30)
                    answered.append(answer.status_code)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert answered == [302] * 200
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Click)) == 0  # all queued
        assert served.stop() == 0
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Click).where(Click.code == code)) == 200
