"""The click redirect's fast path: ``GET /l/<code>`` answered in WSGI, before Flask.

Following a share link is the busiest request the engine serves (every visitor of
every shared link), and with clicks written in batches (``royalties.clicks``) a click
needs no database: its cost was Flask's own per-request work (request context, URL
matching, a dozen hooks, a response object), more than the click itself. So with
batching on, ``ClickRedirects`` answers a well-formed code's click itself, doing for
it what the Flask route and the app's hooks do, through the same functions:

- the per-address click budget (``api.limits.spend``, counted as the route counts it:
  ``address_key``) and its 429 page (``refusal``);
- the request id (``X-Request-Id`` kept or made, on every log line meanwhile), the
  request's metrics and its log line (``api.telemetry.finished``);
- the security headers (``api.headers``) and ``Cache-Control: no-store``;
- the link's target from ``royalties.clicks.BatchedClicks``, the click queued there;
  the same 302 (werkzeug's redirect, built once per target) or 404 page.

Anything else goes on to Flask, which answers as it always did: another method or
path, a code of another shape (the route's own checks then decide), the metrics
listener's port, batching off, and any failure (the route then meets it and answers
with the app's error handling; the click's budget was spent here already).
Measured by ``bench/purchases.py`` (clicks against a bare Flask redirect).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from flask import Flask
from werkzeug.utils import redirect

from api import logs
from api.config import metrics_port
from api.headers import add_security_headers, security_headers
from api.limits import CLICKS, address_key, refusal, spend
from api.metrics import local_port
from api.telemetry import HEADER, finished, request_id_from
from royalties.clicks import BatchedClicks
from royalties.services.links import hash_client_address, looks_like_code

ROUTE = "/l/<code>"  # the Flask route's rule: the metrics name the request alike
_PREFIX = "/l/"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@lru_cache(maxsize=4096)
def _redirect_to(target: str) -> tuple[str, bytes]:
    """The Location header and the body of werkzeug's 302 to ``target``."""
    answer = redirect(target, 302)
    return answer.headers["Location"], answer.get_data()


@lru_cache(maxsize=1)
def _not_found() -> bytes:
    from api.resources.links import NOT_FOUND_PAGE

    return NOT_FOUND_PAGE.encode()


class ClickRedirects:
    """WSGI middleware in front of the Flask app ``app`` (``inner``: its WSGI callable)."""

    def __init__(self, app: Flask, clicks: BatchedClicks, inner: WSGIApp) -> None:
        self.app, self.clicks, self.inner = app, clicks, inner
        self.salt = str(app.config["CLICK_HASH_SALT"])
        self.metrics_port = metrics_port(app.config.get("METRICS_BIND"))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or not path.startswith(_PREFIX)
            or not looks_like_code(code := path[len(_PREFIX) :])
            or environ.get("QUERY_STRING")  # the route's shape checks read the query
            or (self.metrics_port is not None and local_port(environ) == self.metrics_port)
        ):
            return self.inner(environ, start_response)
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = logs.REQUEST_ID.set(request_id)
        try:
            return self._click(environ, start_response, code, path, started, request_id)
        finally:
            logs.REQUEST_ID.reset(token)

    def _click(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        code: str,
        path: str,
        started: float,
        request_id: str,
    ) -> Any:
        address = environ.get("REMOTE_ADDR") or ""
        try:
            with self.app.app_context():
                wait = spend(CLICKS, address_key(address))
                if wait is not None:
                    refused = refusal(CLICKS, wait)
                    add_security_headers(refused.headers, refused.mimetype, path)
                    refused.headers[HEADER] = request_id
                    seconds = time.perf_counter() - started
                    finished("GET", ROUTE, path, refused.status_code, seconds)
                    return refused(environ, start_response)
            agent = environ.get("HTTP_USER_AGENT", "")
            target = self.clicks.follow(code, hash_client_address(self.salt, address), agent)
        except Exception:  # the route meets the same trouble and answers as the app does
            return self.inner(environ, start_response)
        if target is None:
            status, body, headers = 404, _not_found(), []
        else:
            location, body = _redirect_to(target)
            status, headers = 302, [("Location", location), ("Cache-Control", "no-store")]
        headers += [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *security_headers("text/html", path),
            (HEADER, request_id),
        ]
        start_response("302 FOUND" if status == 302 else "404 NOT FOUND", headers)
        finished("GET", ROUTE, path, status, time.perf_counter() - started)
        return [body]
