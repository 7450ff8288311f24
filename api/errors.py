"""Every error leaves as ``application/problem+json`` (RFC 9457), from this one place.

- Domain errors map to a status by class; their ``code`` is the stable ``code`` and the
  last segment of ``type``.
- webargs/marshmallow validation failures become 422 with per-field ``errors``;
  malformed JSON 400; unknown routes 404; wrong methods 405.
- Anything else is a bug: logged with its traceback server-side, answered with a bare
  500 that names nothing internal.
"""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Flask, Response, json
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from royalties import errors as e

log = logging.getLogger("royalties.api")

PROBLEM_MIME = "application/problem+json"

STATUS_BY_ERROR: list[tuple[type[e.RoyaltiesError], int]] = [
    (e.Unauthenticated, 401),
    (e.NotFound, 404),
    (e.Forbidden, 403),
    (e.IdempotencyKeyMissing, 400),
    (e.IdempotencyKeyReused, 422),
    (e.IdempotencyInFlight, 409),
    (e.Conflict, 409),
    (e.WebhookError, 400),
    (e.PayoutAccountMissing, 409),
    (e.PaymentDeclined, 502),
    (e.PaymentUncertain, 503),
    (e.NotConfigured, 503),
    (e.ValidationFailed, 422),
    (e.AttributionError, 422),
]

_CODE_BY_HTTP = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem document."""

    type = ma.fields.String(metadata={"description": "URI naming the problem type"})
    title = ma.fields.String(metadata={"description": "Short summary of the problem type"})
    status = ma.fields.Integer(metadata={"description": "HTTP status code"})
    code = ma.fields.String(metadata={"description": "Stable machine-readable code"})
    detail = ma.fields.String(metadata={"description": "What went wrong, for a human"})
    errors = ma.fields.Dict(metadata={"description": "Field name -> list of messages"})


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    title = _title(status)
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIME)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def status_for(error: e.RoyaltiesError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    # webargs nests messages by location: {"json": {"field": [...]}}
    if isinstance(messages, dict) and set(messages) <= {
        "json",
        "query",
        "headers",
        "form",
        "files",
        "path",
    }:
        flat: dict[str, Any] = {}
        for per_location in messages.values():
            if isinstance(per_location, dict):
                flat.update(per_location)
            else:
                flat["_schema"] = per_location
        return flat
    return messages if isinstance(messages, dict) else {"_schema": messages}


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, answering every HTTP error as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        if status == 500:
            return problem(500, "internal_error", "The server failed; the error was logged.")
        fields = None
        messages = data.get("messages")
        if status == 422 and isinstance(messages, dict) and set(messages) == {"headers"}:
            # A missing or malformed header is a malformed request, not invalid input.
            if "Idempotency-Key" in messages["headers"]:
                return problem(
                    400,
                    "idempotency_key_missing",
                    "this request needs an 'Idempotency-Key' header of 1 to 255 characters",
                    errors=messages["headers"],
                )
            status = 400
        if "messages" in data:
            fields = _flatten_webargs(data["messages"])
        elif "errors" in data:
            fields = data["errors"]
        detail = data.get("message") or error.description or _title(status)
        if status == 400 and fields and "_schema" in fields:
            detail = "; ".join(str(m) for m in fields["_schema"])
        elif fields and status == 422:
            detail = "The request has invalid fields: " + ", ".join(sorted(fields))
        code = _CODE_BY_HTTP.get(status, "error")
        return problem(status, code, str(detail), errors=fields, headers=data.get("headers"))


def register(app: Flask) -> None:
    @app.errorhandler(e.RoyaltiesError)
    def _domain(error: e.RoyaltiesError) -> Response:
        status = status_for(error)
        if status == 500:
            log.error("domain invariant broken: %s", error, exc_info=error)
            return problem(500, "internal_error", "The server failed; the error was logged.")
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem(
            status, error.code, error.detail, errors=error.fields or None, headers=headers
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return app.extensions["royalties.api"].handle_http_exception(error)  # type: ignore[no-any-return]
        log.exception("unhandled error")
        return problem(500, "internal_error", "The server failed; the error was logged.")
