"""API keys: issue, authenticate, revoke.

A key is ``rk_`` plus 32 base32 characters (160 random bits). Only its SHA-256 is kept;
the plain key exists once, in the response that created it.

A key is checked against the database on every request (nothing caches a principal
across requests), so a revoked key is refused from the next request on. Revocation is
one conditional UPDATE: of two concurrent revocations or rotations of a key, exactly one
succeeds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, select, update
from sqlalchemy.orm import Session

from royalties.db import first_read, utcnow
from royalties.ids import new_id, random_token
from royalties.models import ApiKey
from royalties.models.accounts import ROLES

KEY_PREFIX = "rk_"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and, except for admins, the id of what the key belongs to."""

    key_id: str
    role: str
    owner_id: str | None

    @property
    def client_id(self) -> str:
        """The scope of the caller's idempotency keys."""
        return self.owner_id or self.key_id


def hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def well_formed(plain: str) -> bool:
    """True when ``plain`` could be a key we issued (checked before any lookup)."""
    return plain.startswith(KEY_PREFIX) and len(plain) <= MAX_KEY_LENGTH


def issue(session: Session, role: str, owner_id: str | None) -> tuple[ApiKey, str]:
    """Add a new key for ``role``/``owner_id`` to the session: its row and its plain text."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    plain = KEY_PREFIX + random_token(32)
    row = ApiKey(
        id=new_id("key"),
        key_hash=hash_key(plain),
        prefix=plain[:10],
        role=role,
        owner_id=owner_id,
        created_at=utcnow(),
    )
    session.add(row)
    return row, plain


def issue_key(session: Session, role: str, owner_id: str | None) -> str:
    """Add a new key for ``role``/``owner_id`` to the session and return its plain text."""
    return issue(session, role, owner_id)[1]


def revoke(session: Session, key_id: str, *, at: datetime | None = None) -> bool:
    """Revoke the key ``key_id``; False when it does not exist or was already revoked.

    The caller commits. The UPDATE only matches a live key, so a concurrent revocation
    or rotation that got there first makes this one report False.
    """
    result = cast(
        CursorResult[Any],
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=at or utcnow())
        ),
    )
    return result.rowcount == 1


# Every authenticated request runs this: built once, executed on the connection.
_BY_HASH = select(ApiKey.id, ApiKey.role, ApiKey.owner_id).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


def authenticate(session: Session, plain: str) -> Principal | None:
    """The principal for ``plain``, or None for an unknown, revoked or malformed key."""
    if not well_formed(plain):
        return None
    with first_read(session) as conn:
        row = conn.execute(_BY_HASH, {"key_hash": hash_key(plain)}).first()
    if row is None:
        return None
    return Principal(key_id=row.id, role=row.role, owner_id=row.owner_id)
