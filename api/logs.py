"""Logging for every process of the engine (``royalties serve``'s workers, the CLI, the
worker): one setup, safe to ship to a log store.

- Nothing secret or personal in a line: SQL parameters are hidden at the source
  (``royalties.db.make_engine`` sets ``hide_parameters``), and every formatter set up
  here masks, as a second line of defence, email addresses, Stripe and API keys
  (``sk_``, ``rk_``, ``pk_``, ``whsec_``), 64-hex digests (key and token hashes) and the
  values in a database's ``Key (column)=(value)`` detail, anywhere in the line: message
  and traceback alike.
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


class WithRequestId(logging.Filter):
    """Adds ``request_id`` (the current request's, or ``-``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class TextFormatter(logging.Formatter):
    """Readable lines, masked whole: message, traceback and stack alike (the record is
    left as it is, for any other handler)."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(request_id)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; each text masked before it is encoded (a traceback's
    newline, once escaped, would hide the start of a key from the patterns)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": redact(record.getMessage()),
        }
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            for name in HTTP_FIELDS:
                value = http.get(name)
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(record.stack_info)
        return json.dumps(line, default=str)


def formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` (or ``fmt``) names: ``json`` or ``text``."""
    name = (fmt or os.environ.get("LOG_FORMAT") or "text").strip().lower()
    if name not in ("json", "text"):
        raise SystemExit(f"LOG_FORMAT must be json or text, got {name!r}")
    return JsonFormatter() if name == "json" else TextFormatter()


def install(handler: logging.Handler, fmt: str | None = None) -> logging.Handler:
    """Give ``handler`` the request id and the configured, redacting format."""
    if not any(isinstance(f, WithRequestId) for f in handler.filters):
        handler.addFilter(WithRequestId())
    handler.setFormatter(formatter(fmt))
    return handler


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each line (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


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
    handler = install(logging.StreamHandler(stream) if stream else _Stderr())
    handler._royalties = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # The Stripe SDK logs every request at INFO, SQLAlchemy every statement and its result
    # rows (people's data) at INFO and DEBUG: only their warnings are worth a line.
    for noisy in ("stripe", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
