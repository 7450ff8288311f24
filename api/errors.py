"""Every error leaves as ``application/problem+json`` (RFC 9457), from this one place.

- Domain errors map to a status by class; their ``code`` is the stable ``code`` and the
  last segment of ``type``.
- webargs/marshmallow validation failures become 422 with per-field ``errors``;
  malformed JSON 400; unknown routes 404; wrong methods 405.
- Anything else is a bug: logged with its traceback server-side, answered with a bare
  500 that names nothing internal.
- Every problem carries the request's ``request_id`` (api/telemetry.py), the key to its
  log lines.
- The OpenAPI document says so: every error response is documented as problem+json,
  404 wherever the path names an id, 401/403 wherever a key is needed.
- Secrets stay out of the logs: the Stripe SDK logs what Stripe answers (bodies at
  DEBUG, error messages at INFO), so the configured Stripe secrets are masked there.
"""

from __future__ import annotations

import http
import logging
from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, Response, g, has_request_context, json
from flask_smorest import Api
from flask_smorest.utils import prepare_response
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
    (e.RunInProgress, 409),
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
    request_id = ma.fields.String(
        metadata={"description": "The request's id (X-Request-Id), as on its log lines"}
    )


def problem_body(
    status: int, code: str, detail: str, *, errors: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The problem document itself: what ``problem`` sends, and what a batch answers
    for each of its items that failed."""
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": _title(status),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    if has_request_context() and g.get("request_id"):
        body["request_id"] = g.request_id  # to find the request's log lines
    return body


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return _send(problem_body(status, code, detail, errors=errors), headers)


def _send(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_MIME)
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


def invalid_fields(fields: dict[str, Any]) -> str:
    """The ``detail`` of a 422 for invalid input: the fields, by name."""
    return "The request has invalid fields: " + ", ".join(sorted(fields))


_SERVER_FAILED = "The server failed; the error was logged."


def problem_of(error: Exception) -> dict[str, Any]:
    """The problem body the API answers for ``error``: a domain error by its class, a
    marshmallow ``ValidationError`` as invalid fields (422), anything else as a bare 500
    (logged with its traceback)."""
    if isinstance(error, ma.ValidationError):
        fields = error.normalized_messages()
        return problem_body(422, "invalid", invalid_fields(fields), errors=fields)
    if isinstance(error, e.RoyaltiesError):
        status = status_for(error)
        if status != 500:
            return problem_body(status, error.code, error.detail, errors=error.fields or None)
        log.error("domain invariant broken: %s", error, exc_info=error)
    else:
        log.error("unhandled error", exc_info=error)
    return problem_body(500, "internal_error", _SERVER_FAILED)


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


PROBLEM_CONTENT = {PROBLEM_MIME: {"schema": "Problem"}}


class ProblemResponses(BasePlugin):  # type: ignore[misc]
    """Documents each operation's errors as they are sent: problem+json bodies, 404 for an
    unknown id in the path, 401/403 where a key is needed."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        for operation in (operations or {}).values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, description in _implied_errors(path or "", operation).items():
                if not any(str(key) == str(status) for key in responses):
                    responses[status] = {"description": description}
            for status, response in responses.items():
                if (
                    str(status).isdigit()
                    and int(status) >= 400
                    and isinstance(response, dict)
                    and "content" not in response
                    and "$ref" not in response
                ):
                    response["content"] = dict(PROBLEM_CONTENT)


def _implied_errors(path: str, operation: dict[str, Any]) -> dict[int, str]:
    implied: dict[int, str] = {}
    if "{" in path:
        implied[404] = "Unknown id"
    if operation.get("security"):
        implied[401] = "No, unknown or revoked API key"
        implied[403] = "Wrong role, or not the owner"
    return implied


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api, answering every HTTP error as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, *, extra_plugins: Any = None, **options: Any) -> None:
        plugins = [*(extra_plugins or ()), ProblemResponses()]
        super()._init_spec(extra_plugins=plugins, **options)

    def _register_responses(self) -> None:
        """The shared responses of flask-smorest, with errors as problem+json."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            content_type = self.DEFAULT_RESPONSE_CONTENT_TYPE
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                content_type = PROBLEM_MIME
            prepare_response(response, self.spec, content_type)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Any other error", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_MIME)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        status = error.code or 500
        data = getattr(error, "data", None) or {}
        if status == 500:
            return problem(500, "internal_error", _SERVER_FAILED)
        # e.g. Allow on a 405: everything but the body's own type
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        fields = None
        messages = data.get("messages")
        if status == 422 and isinstance(messages, dict) and set(messages) == {"headers"}:
            # A missing or malformed header is a malformed request, not invalid input.
            if "Idempotency-Key" in messages["headers"]:
                return problem(
                    400,
                    "idempotency_key_missing",
                    "this request needs an 'Idempotency-Key' header of 1 to 255 printable "
                    "ASCII characters",
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
            detail = invalid_fields(fields)
        code = _CODE_BY_HTTP.get(status, "error")
        return problem(status, code, str(detail), errors=fields, headers=headers)


class RedactSecrets(logging.Filter):
    """Masks the given secrets in every record of the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, ()
        return True


def redact_in_library_logs(logger_name: str, *secrets: str | None) -> None:
    """Mask ``secrets`` in what ``logger_name`` logs (one filter per logger, shared by
    every app in the process)."""
    logger = logging.getLogger(logger_name)
    redactor = next((f for f in logger.filters if isinstance(f, RedactSecrets)), None)
    if redactor is None:
        redactor = RedactSecrets()
        logger.addFilter(redactor)
    redactor.secrets.update(secret for secret in secrets if secret and len(secret) >= 8)


def register(app: Flask) -> None:
    redact_in_library_logs(
        "stripe", app.config.get("STRIPE_API_KEY"), app.config.get("STRIPE_WEBHOOK_SECRET")
    )

    @app.errorhandler(e.RoyaltiesError)
    def _domain(error: e.RoyaltiesError) -> Response:
        body = problem_of(error)
        headers = {"WWW-Authenticate": "Bearer"} if body["status"] == 401 else None
        return _send(body, headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return app.extensions["royalties.api"].handle_http_exception(error)  # type: ignore[no-any-return]
        log.exception("unhandled error")
        return problem(500, "internal_error", _SERVER_FAILED)
