"""Following a request, and asking whether the process is fit to serve.

- Request ids: a valid incoming ``X-Request-Id`` (1 to 128 of ``A-Z a-z 0-9 . _ -``) is
  kept, anything else replaced by a new one; it goes back in the ``X-Request-Id``
  header and in every problem+json body (``request_id``), and is on every log line
  written while the request runs (``api.logs.REQUEST_ID``).
- One log line per request (logger ``royalties.request``, INFO): method, path, status,
  duration and the caller's role and id. The path has sign-in tokens masked and no
  query string; the line is where gunicorn's access log would have been.
- ``/healthz``: the process answers (no database). ``/readyz``: the database answers
  ``SELECT 1`` and its schema is at the latest migration, else 503 saying which.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from sqlalchemy import text

from api import logs, metrics
from api.errors import problem
from api.extensions import db

log = logging.getLogger("royalties.request")

HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Path segments that are secrets: the single-use sign-in link's token.
_SECRET_PATHS = re.compile(r"(/dashboard/login/email/)[^/]+")


def request_id_from(header: str | None) -> str:
    """The id a request is known by: its own when well formed, else a new one."""
    if header and _VALID_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def loggable_path(path: str) -> str:
    return _SECRET_PATHS.sub(r"\1[redacted]", path)


def finished(
    method: str,
    route: str,
    path: str,
    status: int,
    seconds: float,
    role: str | None = None,
    principal_id: str | None = None,
) -> None:
    """What every answered request leaves behind: its metrics and its log line."""
    metrics.observe_request(method, route, status, seconds)
    path = loggable_path(path)
    log.info(
        "%s %s %s %.1fms %s",
        method,
        path,
        status,
        seconds * 1000,
        f"{role}:{principal_id}" if role else "-",
        extra={
            "http": {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
                "role": role,
                "principal_id": principal_id,
            }
        },
    )


def register(app: Flask) -> None:
    """Install the hooks and the health checks; call first in ``create_app``, so every
    later before-request hook (the limiter, the shape checks) runs with an id."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id_from(request.headers.get(HEADER))
        g.request_id_token = logs.REQUEST_ID.set(g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is None:  # a request that failed before the first hook
            return response
        response.headers[HEADER] = request_id
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        who = g.get("principal") or g.get("viewer")
        role = getattr(who, "role", None)
        principal_id = getattr(who, "owner_id", None) or getattr(who, "key_id", None)
        finished(
            request.method,
            route,
            request.path,
            response.status_code,
            time.perf_counter() - g.started,
            role,
            principal_id,
        )
        return response

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            logs.REQUEST_ID.reset(token)

    @app.get("/healthz")
    def healthz() -> Response:
        """The process answers (nothing else is checked)."""
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        """The database answers and its schema is at the latest migration."""
        from royalties.migrate import applied_heads, current_heads

        heads = app.extensions.get("royalties.heads")
        if heads is None:  # the shipped migrations do not change while the app runs
            heads = app.extensions["royalties.heads"] = set(current_heads())
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                applied = applied_heads(conn)
        except Exception as exc:
            log.warning("readiness: the database does not answer: %s", type(exc).__name__)
            return problem(503, "not_ready", "the database does not answer")
        if applied != heads:
            return problem(
                503,
                "not_ready",
                "the database schema is not at the latest migration: run 'royalties db upgrade'",
            )
        return Response("ready\n", mimetype="text/plain")
