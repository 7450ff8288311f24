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
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Claim the request's ``Idempotency-Key`` (scoped to its method and path, for its
    body) and run ``work`` once, or replay the answer the key already has.

    The claim opens the transaction ``work`` runs in: ``work`` must store its response
    with ``idempotency.complete`` and commit (the services take the claim for that), so
    the key and the effects commit together; on failure both roll back. A batch of
    purchases claims its items' keys itself (``purchase_batch``).
    """
    scope = f"{request.method} {request.path}"
    result, replayed = idempotency.once(
        db.session,
        work,
        client_id=current_principal().client_id,
        key=request.headers.get("Idempotency-Key"),
        scope=scope,
        request_hash=idempotency.fingerprint(scope, request.get_json(silent=True)),
    )
    return result, CREATED, {REPLAYED: "true"} if replayed else {}
