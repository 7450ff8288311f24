"""A webhook receiver for trying the engine locally (``royalties demo`` uses it).

A real HTTP server on 127.0.0.1 that verifies each request's Standard Webhooks
signature with the endpoint's secret (the ``standardwebhooks`` library, as any
receiver would), answers 204 to a good one and 400 to a bad one, and keeps what it got.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    event: dict[str, Any]
    verified: bool


@dataclass
class LocalReceiver:
    """``with LocalReceiver() as r:`` serves on a free port; set ``secret`` before the
    first delivery; ``r.url`` is where to point an endpoint; ``r.got`` what arrived."""

    secret: str | None = None
    got: list[Delivery] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        return f"http://127.0.0.1:{self._server.server_port}/hooks"

    def __enter__(self) -> LocalReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = Webhook(receiver.secret or "").verify(body, headers)
                    verified = True
                except (WebhookVerificationError, ValueError):
                    event, verified = json.loads(body or b"{}"), False
                receiver.got.append(Delivery(headers.get("webhook-id", ""), event, verified))
                self.send_response(204 if verified else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
