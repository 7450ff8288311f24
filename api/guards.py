"""Checks on the shape of every request, before any view (and after the rate limiter).

- A NUL anywhere in the path or the query string is refused (404 for a path, 422 for a
  query parameter): no id, code or parameter of ours holds one, and PostgreSQL text
  cannot.
- A request body sent to the JSON API (``/v1/...``) must be:
  ``application/json`` (or ``+json``), else 415; at most ``MAX_CONTENT_LENGTH`` bytes
  (``MAX_BATCH_BODY_BYTES`` for a batch of purchases), else 413, also when it comes
  chunked without a ``Content-Length``; JSON that the standard parser loads safely
  (UTF-8, no ``NaN``/``Infinity``, nesting at most ``MAX_DEPTH``), else 400; and text
  that can be stored (no NUL, no unpaired surrogate anywhere in a string or key), else
  422 naming where.

These look at the request's shape, never at what a field may hold, so running before
authentication tells a caller without a key nothing about the field rules. The Stripe
webhook is exempt from the body checks: Stripe signs the raw bytes and the signature
check is its gate (its size is still capped by ``MAX_CONTENT_LENGTH``).
"""

from __future__ import annotations

import json
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from api.errors import PROBLEM_CONTENT, problem

MAX_DEPTH = 32
RAW_BODY_PATHS = frozenset({"/v1/webhooks/stripe"})
# path -> the setting of its own body limit, in place of MAX_CONTENT_LENGTH
LARGER_BODIES = {"/v1/purchases/batch": "MAX_BATCH_BODY_BYTES"}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Unstorable(ValueError):
    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def register(app: Flask) -> None:
    """Install the checks; call after the rate limiter so refused requests still count,
    and before registering blueprints so the OpenAPI document lists what they answer."""
    api = app.extensions.get("royalties.api")
    if api is not None:
        plugin = BodyErrorsDoc()
        plugin.init_spec(api.spec)
        api.spec.plugins.append(plugin)

    @app.before_request
    def _check_request_shape() -> Response | None:
        if request.path in LARGER_BODIES:
            request.max_content_length = app.config[LARGER_BODIES[request.path]]
        if "\x00" in request.path:
            return problem(404, "not_found", "no such resource")
        for name, value in request.args.items(multi=True):
            if "\x00" in name or "\x00" in value:
                field = name.replace("\x00", "") or "_query"
                return problem(
                    422,
                    "invalid",
                    f"The request has invalid fields: {field}",
                    errors={field: ["must not contain NUL characters"]},
                )
        if (
            request.method in _BODY_METHODS
            and request.path.startswith("/v1/")
            and request.path not in RAW_BODY_PATHS
            and _has_body()
        ):
            return _check_json_body()
        return None


class BodyErrorsDoc(BasePlugin):  # type: ignore[misc]
    """Adds the body checks' answers to every operation that takes a JSON body."""

    ERRORS = {
        400: "The body is not well-formed JSON",
        413: "The body is larger than the limit (`MAX_BODY_BYTES`)",
        415: "The body is not application/json",
        422: "Invalid fields, each named in `errors`",
    }

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        if path in RAW_BODY_PATHS:
            return
        errors = dict(self.ERRORS)
        if path in LARGER_BODIES:
            errors[413] = f"The body is larger than the limit (`{LARGER_BODIES[path]}`)"
        for operation in (operations or {}).values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                if not any(str(key) == str(status) for key in responses):
                    responses[status] = {
                        "description": description,
                        "content": dict(PROBLEM_CONTENT),
                    }


def _has_body() -> bool:
    if request.content_length is not None:
        return request.content_length > 0
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _check_json_body() -> Response | None:
    if not request.is_json:
        return problem(
            415,
            "unsupported_media_type",
            "send the request body as application/json",
            headers={"Accept": "application/json"},
        )
    # Reads at most MAX_CONTENT_LENGTH bytes (werkzeug raises 413 for a longer declared
    # length); cached for the view's own parse.
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body is cut at the limit rather than refused: refuse it here.
        raise RequestEntityTooLarge()
    if not raw:
        return None
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):  # also bad UTF-8 and over-long integers
        return problem(400, "bad_request", "the request body is not well-formed JSON")
    if _depth_exceeds(body, MAX_DEPTH):
        return problem(400, "bad_request", f"the JSON body nests deeper than {MAX_DEPTH} levels")
    try:
        _check_storable(body, "")
    except _Unstorable as exc:
        field = exc.where or "_schema"
        return problem(
            422,
            "invalid",
            f"The request has invalid fields: {field}",
            errors={field: ["must not contain NUL characters or unpaired surrogates"]},
        )
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")  # fails on an unpaired surrogate such as "\ud800"
    except UnicodeEncodeError:
        return True
    return False


def _check_storable(value: Any, where: str) -> None:
    if isinstance(value, str):
        if _bad_text(value):
            raise _Unstorable(where)
    elif isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if _bad_text(key):
                raise _Unstorable(where)
            _check_storable(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{where}.{index}" if where else str(index))
