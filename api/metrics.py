"""Prometheus metrics: what is counted, and ``/metrics`` in the text format.

Counted in each process (under ``royalties serve`` in gunicorn's multiprocess mode:
every worker writes its own files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape sums
them, so it does not matter which worker answers):

- ``royalties_http_requests_total{method,route,status}`` and
  ``royalties_http_request_duration_seconds{method,route}``: the route is the URL rule
  (``/v1/fans/<fan_id>``), never the raw path, so ids do not make new series;
- ``royalties_purchases_total{currency}``, ``royalties_refunds_total{currency}`` and the
  ``..._amount_minor_total`` beside each: recorded ones, replays not counted;
- ``royalties_rate_limited_total{budget}``: requests refused with 429.

Read from the database at each scrape (one grouped query each, ``services/monitoring``):
``royalties_rewards{state}``, ``royalties_payouts{state}`` (payouts made by any process,
the CLI's runs included), ``royalties_events_not_fanned_out`` and
``royalties_webhook_deliveries_pending``.

Who may read it: with ``METRICS_BIND`` set, anyone reaching that (second) listener, and
nobody on the main one; unset, an admin API key on the main listener.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from api.auth import require
from api.errors import problem
from api.extensions import db
from royalties.services import monitoring

REQUESTS = Counter(
    "royalties_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "royalties_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SALES = {
    kind: (
        Counter(f"royalties_{kind}", f"{kind.capitalize()} recorded", ["currency"]),
        Counter(
            f"royalties_{kind}_amount_minor",
            f"Sum of the {kind} recorded, in minor units",
            ["currency"],
        ),
    )
    for kind in ("purchases", "refunds")
}
RATE_LIMITED = Counter("royalties_rate_limited", "Requests refused with 429", ["budget"])


def record_sale(kind: str, answer: Any) -> Any:
    """Count a purchase or refund that ``run_once`` answered, unless it was a replay;
    return the answer unchanged."""
    body, _status, headers = answer
    if "Idempotent-Replayed" not in headers:
        count, amount = SALES[kind]
        currency = str(body.get("currency") or "?").upper()
        count.labels(currency).inc()
        amount.labels(currency).inc(int(body.get("amount") or 0))
    return answer


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def _snapshot_registry(figures: monitoring.Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    rewards = Gauge("royalties_rewards", "Rewards by state", ["state"], registry=registry)
    for state, count in figures.rewards_by_state.items():
        rewards.labels(state).set(count)
    payouts = Gauge("royalties_payouts", "Payouts by state", ["state"], registry=registry)
    for state, count in figures.payouts_by_state.items():
        payouts.labels(state).set(count)
    Gauge(
        "royalties_events_not_fanned_out",
        "Events written and not yet turned into webhook deliveries",
        registry=registry,
    ).set(figures.events_not_fanned_out)
    Gauge(
        "royalties_webhook_deliveries_pending",
        "Webhook deliveries not delivered or given up yet",
        registry=registry,
    ).set(figures.webhook_deliveries_pending)
    return registry


def exposition(figures: monitoring.Snapshot) -> bytes:
    """Every metric, as Prometheus reads them: this process's (or, in multiprocess mode,
    every worker's summed) counters, then the database's figures."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters, path=path)
    else:
        counters = REGISTRY
    return generate_latest(counters) + generate_latest(_snapshot_registry(figures))


def local_port(environ: dict[str, Any]) -> int | None:
    """The port of the listener the request came in on (from the connection, not from
    the Host header, which a client chooses)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    try:
        address = sock.getsockname() if sock is not None else None
    except OSError:
        return None
    return int(address[1]) if isinstance(address, tuple) else None


def _scrape() -> Response:
    body = exposition(monitoring.snapshot(db.session))
    return Response(body, content_type=CONTENT_TYPE_LATEST)


@require("admin")
def _scrape_with_key() -> Response:
    return _scrape()


def register(app: Flask) -> None:
    """``/metrics``; with ``METRICS_BIND``, requests on its port answer nothing else."""
    from api.config import metrics_port

    port = metrics_port(app.config.get("METRICS_BIND"))

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus metrics (an admin key, or the METRICS_BIND listener)"""
        if port is None:
            return _scrape_with_key()
        if local_port(request.environ) == port:
            return _scrape()
        return problem(404, "not_found", "no such resource")

    if port is not None:

        @app.before_request
        def _only_metrics_on_the_metrics_listener() -> Response | None:
            if request.path != "/metrics" and local_port(request.environ) == port:
                return problem(404, "not_found", "this listener serves /metrics only")
            return None
