"""The operator's audit log: who did what, to what, when.

- Every operator action is recorded by the service that performs it, with
  :func:`record`, in the action's own transaction: it commits with the action or rolls
  back with it, so a refused request (bad input, a conflict) leaves no row.
- The actor is given as plain values (:class:`Actor`): the key that acted, or the
  sign-in link whose dashboard session acted, with its role and owner. The HTTP layer
  builds it from the API key or the session; the command line acts as :data:`COMMAND_LINE`.
  A service called without an actor (tests, the demo's seeding) records nothing.
- ``detail`` is small and holds no secret: never a key, a key's hash or a token.
  :func:`record` refuses the names that would carry one.
- The log is read newest first, paged by ``(at, id)``, optionally by action or actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from royalties.db import utcnow
from royalties.models import OperatorAction
from royalties.pagination import Page, keyset, page

#: Every action the log records, with what it means (shown on the dashboard).
ACTIONS = {
    "artist.created": "created an artist",
    "storefront.created": "created a storefront",
    "artist.invited": "invited an artist by email",
    "key.created": "created an admin key",
    "key.rotated": "rotated a key",
    "key.revoked": "revoked a key",
    "review.approved": "approved a held reward",
    "review.rejected": "rejected a held reward",
    "signal.cleared": "cleared a fraud signal",
    "payout_run.started": "started a payout run",
}
_SECRETS = frozenset({"api_key", "key", "key_hash", "token", "token_hash", "secret", "password"})


@dataclass(frozen=True)
class Actor:
    """Who acted: an API key (``key_id``) or a sign-in link's session (``link_id``), with
    the role and owner it acted as."""

    key_id: str | None
    role: str
    owner_id: str | None
    link_id: str | None = None


#: The operator at the command line (``royalties admin-key create``, ``payouts run``).
COMMAND_LINE = Actor(key_id=None, role="cli", owner_id=None)


def record(
    session: Session,
    actor: Actor | None,
    action: str,
    target: str | None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add the row for ``action`` by ``actor`` on ``target`` to the caller's transaction
    (nothing when there is no actor). The caller commits, with the action."""
    if actor is None:
        return
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    detail = dict(detail or {})
    leaking = sorted(_SECRETS.intersection(detail))
    if leaking:
        raise ValueError(f"audit detail must not carry secrets: {leaking}")
    session.add(
        OperatorAction(
            at=utcnow(),
            actor_key_id=actor.key_id,
            actor_link_id=actor.link_id,
            actor_role=actor.role,
            actor_owner_id=actor.owner_id,
            action=action,
            target_id=target,
            detail=detail,
        )
    )


def latest(session: Session, action: str, targets: list[str]) -> dict[str, datetime]:
    """When ``action`` was last done to each of ``targets`` (those it never was to are
    left out), in one query."""
    if not targets:
        return {}
    rows = session.execute(
        select(OperatorAction.target_id, func.max(OperatorAction.at))
        .where(OperatorAction.action == action, OperatorAction.target_id.in_(targets))
        .group_by(OperatorAction.target_id)
    ).all()
    return {str(target): at for target, at in rows}


def entries(
    session: Session,
    *,
    action: str | None = None,
    actor_key_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[OperatorAction]:
    """The log, newest first, optionally one action's or one key's."""
    query = select(OperatorAction)
    if action is not None:
        query = query.where(OperatorAction.action == action)
    if actor_key_id is not None:
        query = query.where(OperatorAction.actor_key_id == actor_key_id)
    query = keyset(query, OperatorAction.at, OperatorAction.id, limit=limit, cursor=cursor)
    return page(list(session.scalars(query)), limit, lambda row: (row.at, row.id))
