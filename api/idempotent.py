"""Runs a create-style view under an Idempotency-Key (SPEC section 8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request

from api.auth import current_principal
from api.extensions import db
from royalties import idempotency


def run_once(
    work: Callable[[idempotency.Claim], dict[str, Any]],
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Claim the caller's key for this request, run ``work`` once, or replay its answer.

    ``work`` must store its response with ``idempotency.complete`` inside its own
    transaction (the services take the claim for that).
    """
    scope = f"{request.method} {request.path}"
    outcome = idempotency.begin(
        db.session,
        client_id=current_principal().client_id,
        key=request.headers.get("Idempotency-Key"),
        scope=scope,
        request_hash=idempotency.fingerprint(scope, request.get_json(silent=True)),
    )
    if isinstance(outcome, idempotency.Replay):
        return outcome.body, outcome.status, {"Idempotent-Replayed": "true"}
    try:
        return work(outcome), 201, {}
    except BaseException:
        idempotency.abandon(db.session, outcome)
        raise
