"""API key rotation, revocation and listing.

- Rotation replaces the caller's key with a new one of the same role and owner, in one
  transaction: the old key is revoked and the new one created together, or neither
  happens. Two concurrent rotations of one key cannot both succeed (the revocation is a
  conditional UPDATE), so a key never has two successors.
- Revocation is immediate (keys are looked up on every request) and idempotent.
- Rotations and revocations are audited (``royalties/audit.py``) in their own
  transaction when an actor is given; revoking a revoked key records nothing.
- Listings show ids, prefixes, roles, owners and dates; never a hash or a plain key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import audit, keys
from royalties.audit import Actor
from royalties.errors import NotFound, Unauthenticated
from royalties.ids import looks_like_id
from royalties.models import ApiKey
from royalties.pagination import Page, keyset, page
from royalties.services._tx import transactional


@dataclass(frozen=True)
class Rotated:
    """The new key (its plain text is available only here) and the id of the one it replaced."""

    key_id: str
    api_key: str
    prefix: str
    role: str
    owner_id: str | None
    created_at: datetime
    replaced_key_id: str


@transactional
def rotate_key(session: Session, *, key_id: str, actor: Actor | None = None) -> Rotated:
    """Revoke the live key ``key_id`` and issue its successor for the same role and owner.

    Raises ``Unauthenticated`` when the key is unknown or already revoked (for instance by
    a concurrent rotation that committed first).
    """
    old = session.get(ApiKey, key_id)
    if old is None or not keys.revoke(session, key_id):
        raise Unauthenticated("the API key is unknown or revoked")
    row, plain = keys.issue(session, old.role, old.owner_id)
    session.flush()
    detail = {"replaced_key_id": key_id, "role": row.role, "owner_id": row.owner_id}
    audit.record(session, actor, "key.rotated", row.id, detail)
    return Rotated(
        key_id=row.id,
        api_key=plain,
        prefix=row.prefix,
        role=row.role,
        owner_id=row.owner_id,
        created_at=row.created_at,
        replaced_key_id=key_id,
    )


@transactional
def revoke_key(session: Session, *, key_id: str, actor: Actor | None = None) -> ApiKey:
    """Revoke ``key_id`` at once; revoking a revoked key changes nothing."""
    if looks_like_id(key_id):
        revoked = keys.revoke(session, key_id)
        row = session.get(ApiKey, key_id, populate_existing=True)
        if row is not None:
            if revoked:
                detail = {"role": row.role, "owner_id": row.owner_id}
                audit.record(session, actor, "key.revoked", key_id, detail)
            return row
    raise NotFound(f"API key {key_id} does not exist")


def list_keys(
    session: Session, *, owner_id: str | None, limit: int, cursor: str | None
) -> Page[ApiKey]:
    """Newest first, optionally one owner's."""
    query = select(ApiKey)
    if owner_id is not None:
        query = query.where(ApiKey.owner_id == owner_id)
    query = keyset(query, ApiKey.created_at, ApiKey.id, limit=limit, cursor=cursor)
    return page(list(session.scalars(query)), limit, lambda key: (key.created_at, key.id))
