"""Runs a create-style view under an Idempotency-Key (SPEC section 8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request

from api.auth import current_principal
from api.extensions import db
from royalties import idempotency

# Keys are taken by create-style endpoints: the first answer and every replay are 201.
CREATED = 201
REPLAYED = "Idempotent-Replayed"  # the header that marks a replayed answer


def run_once(
    work: Callable[[idempotency.Claim], dict[str, Any]],
    *,
    key: str | None = None,
    body: Any = None,
    scope: str | None = None,
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Claim the caller's key for this request and run ``work`` once, or replay the
    answer the key already has.

    The claim opens the transaction ``work`` runs in: ``work`` must store its response
    with ``idempotency.complete`` and commit (the services take the claim for that), so
    the key and the effects commit together; on failure both roll back.

    By default the key is the ``Idempotency-Key`` header, the body the request's and the
    scope its method and path; a batch passes each item's own ``key``, ``body`` and the
    ``scope`` of the single endpoint the item stands for.
    """
    if scope is None:
        scope = f"{request.method} {request.path}"
        key = request.headers.get("Idempotency-Key")
        body = request.get_json(silent=True)
    try:
        outcome = idempotency.claim(
            db.session,
            client_id=current_principal().client_id,
            key=key,
            scope=scope,
            request_hash=idempotency.fingerprint(scope, body),
        )
    except BaseException:
        db.session.rollback()
        raise
    if isinstance(outcome, idempotency.Replay):
        db.session.rollback()  # nothing to run: end the transaction the lookup opened
        return outcome.body, CREATED, {REPLAYED: "true"}
    return work(outcome), CREATED, {}
