"""Logging for every process of the engine (``royalties serve``'s workers, the CLI, the
worker): one setup, safe to ship to a log store.

- Nothing secret or personal in a line: SQL parameters are hidden at the source
  (``royalties.db.make_engine`` sets ``hide_parameters``), and every handler set up here
  redacts, as a second line of defence, email addresses, Stripe and API keys (``sk_``,
  ``rk_``, ``pk_``, ``whsec_``), 64-hex digests (key and token hashes) and the values in
  a database's ``Key (column)=(value)`` detail, in the message and in the traceback.
- Every line of a request carries its request id (``REQUEST_ID``, set by
  ``api.telemetry``); lines outside a request carry ``-``.
- ``LOG_FORMAT=json``: one JSON object a line (time, level, logger, pid, request_id,
  message, and for the request line method, path, status, duration_ms, role,
  principal_id). Otherwise readable text. ``LOG_LEVEL`` sets the level (INFO for the
  server, WARNING for the CLI unless set).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Fields of the one line logged per request (``extra={"http": {...}}``), in this order.
HTTP_FIELDS = ("method", "path", "status", "duration_ms", "role", "principal_id")

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk|pk|whsec)_[A-Za-z0-9_]+"), "[secret]"),
    (re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])"), "[hash]"),
    # PostgreSQL's detail of a constraint violation names the offending value.
    (re.compile(r"(Key \([^)]*\))=\((?:[^()]|\([^()]*\))*\)"), r"\1=([redacted])"),
]


def redact(text: str) -> str:
    """``text`` with every email address, key, secret and digest masked."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    """Masks what ``redact`` masks in a record's message, traceback and stack."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class WithRequestId(logging.Filter):
    """Adds ``request_id`` (the current request's, or ``-``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(request_id)s] %(message)s"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            line.update((name, http.get(name)) for name in HTTP_FIELDS)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` (or ``fmt``) names: ``json`` or ``text``."""
    name = (fmt or os.environ.get("LOG_FORMAT") or "text").strip().lower()
    if name not in ("json", "text"):
        raise SystemExit(f"LOG_FORMAT must be json or text, got {name!r}")
    return JsonFormatter() if name == "json" else TextFormatter()


def install(handler: logging.Handler, fmt: str | None = None) -> logging.Handler:
    """Give ``handler`` the redaction, the request id and the configured format."""
    for kind in (Redact, WithRequestId):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
    handler.setFormatter(formatter(fmt))
    return handler


def setup(*, default_level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) through one installed handler,
    at ``LOG_LEVEL`` (else ``default_level``). Idempotent: a second call replaces the
    handler it made."""
    level = (os.environ.get("LOG_LEVEL") or default_level).strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise SystemExit(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_royalties", False)]:
        root.removeHandler(old)
    handler = install(logging.StreamHandler(stream or sys.stderr))
    handler._royalties = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # The Stripe SDK logs every request at INFO, SQLAlchemy every statement and its result
    # rows (people's data) at INFO and DEBUG: only their warnings are worth a line.
    for noisy in ("stripe", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
