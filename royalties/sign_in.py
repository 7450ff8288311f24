"""Signing in by email: single-use links that expire, and the sessions they open.

Who an address signs in as:

- a fan: ``fans.email``; an artist: ``artists.email`` (both stored in lower case);
- an admin: the addresses the operator lists in ``ADMIN_EMAILS`` (admins have no row of
  their own; their API keys have no owner either).

One address may name several of them (a fan who is also an artist): the mail then
holds one link per identity.

The rules:

- A link's token is 160 random bits; only its SHA-256 is stored, as for API keys.
- A link works once and for ``LINK_TTL`` (15 minutes; an artist's invitation, for
  ``INVITE_LINK_HOURS``, 72 by default): using it is one conditional
  UPDATE that only matches an unused, unexpired link, so of two concurrent uses exactly
  one wins, on SQLite and PostgreSQL alike.
- Asking for a link answers the same whether the address is known or not (the caller
  shows one message for both); the work done here is the same lookup and the same token
  generation in both cases, and nothing is written for an unknown address.
- The session a link opens lasts until it is ended (sign-out), and only while its owner
  still uses the address (a changed fan or artist email, or an address taken out of
  ``ADMIN_EMAILS``, ends it at the next request).

Nothing here commits; ``royalties/services/sign_in.py`` owns the transactions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, literal, select, union_all, update
from sqlalchemy.orm import Session

from royalties.errors import ValidationFailed
from royalties.ids import new_id, random_token
from royalties.models import Artist, Fan, SignInLink

LINK_TTL = timedelta(minutes=15)
#: RFC 5321: a forward path is at most 256 octets, so an address at most 254.
MAX_EMAIL_LENGTH = 254
TOKEN_LENGTH = 32  # base32 characters: 160 bits
_TOKEN = re.compile(r"^[0-9a-z]{32}$")
# Deliberately loose (one @, no spaces or controls, a dot in the domain): the mail
# server is the judge of what it can deliver; this only catches typing mistakes.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+$")


@dataclass(frozen=True)
class Identity:
    """Someone an address signs in as: a role, its owner (None for admins), a name."""

    role: str
    owner_id: str | None
    label: str


@dataclass(frozen=True)
class Issued:
    """A link made for ``identity``; ``token`` is the only copy of the plain secret."""

    identity: Identity
    token: str


@dataclass(frozen=True)
class Grant:
    """What a used link signs in as; ``link_id`` names the session it opens."""

    link_id: str
    role: str
    owner_id: str | None


def parse_email(raw: str | None) -> str:
    """The address typed into the form, normalised; ValidationFailed with a message."""
    email = (raw or "").strip().lower()
    if not email:
        raise ValidationFailed("Enter your email address.", fields={"email": ["missing"]})
    if len(email) > MAX_EMAIL_LENGTH:
        raise ValidationFailed(
            f"That address is longer than {MAX_EMAIL_LENGTH} characters.",
            fields={"email": ["too long"]},
        )
    if not _EMAIL.fullmatch(email):
        raise ValidationFailed(
            "That does not look like an email address (name@example.com).",
            fields={"email": ["not an email address"]},
        )
    return email


def admin_addresses(raw: str | Collection[str] | None) -> frozenset[str]:
    """``ADMIN_EMAILS`` (comma-separated, or already a collection), normalised."""
    items = raw.split(",") if isinstance(raw, str) else list(raw or ())
    return frozenset(item.strip().lower() for item in items if item.strip())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """True when ``token`` could be one we issued (checked before any lookup)."""
    return bool(_TOKEN.fullmatch(token))


def identities(session: Session, email: str, admin_emails: Collection[str]) -> list[Identity]:
    """Everyone ``email`` signs in as, in one query (admins first, then artists, fans)."""
    fans = select(literal("fan"), Fan.id, Fan.handle).where(Fan.email == email)
    artists = select(literal("artist"), Artist.id, Artist.name).where(Artist.email == email)
    rows = session.execute(union_all(artists, fans)).all()
    found = [Identity(str(role), str(owner), str(label)) for role, owner, label in rows]
    if email in admin_emails:
        found.insert(0, Identity("admin", None, "admin"))
    return found


def issue(
    session: Session,
    email: str,
    people: list[Identity],
    now: datetime,
    *,
    ttl: timedelta = LINK_TTL,
) -> list[Issued]:
    """Add one link per identity to the session (none for an unknown address), each
    working once for ``ttl`` (an invitation's link lives longer than ``LINK_TTL``).

    A token is made and hashed even when there is nobody to send it to, so that an
    unknown address costs what a known one does, up to the insert."""
    if not people:
        hash_token(random_token(TOKEN_LENGTH))
        return []
    issued = []
    for person in people:
        token = random_token(TOKEN_LENGTH)
        session.add(
            SignInLink(
                id=new_id("sil"),
                token_hash=hash_token(token),
                email=email,
                role=person.role,
                owner_id=person.owner_id,
                created_at=now,
                expires_at=now + ttl,
            )
        )
        issued.append(Issued(person, token))
    return issued


def _usable(token: str, now: datetime) -> Any:
    return (
        SignInLink.token_hash == hash_token(token),
        SignInLink.used_at.is_(None),
        SignInLink.expires_at > now,
    )


def usable(session: Session, token: str, now: datetime) -> bool:
    """True when ``token`` names an unused link that has not expired (nothing changes)."""
    if not well_formed(token):
        return False
    return session.scalar(select(SignInLink.id).where(*_usable(token, now))) is not None


def use(session: Session, token: str, now: datetime, admin_emails: Collection[str]) -> Grant | None:
    """Mark the link used and return what it signs in as; None when it is unknown, used,
    expired, or its address no longer names that identity. The caller commits.

    The UPDATE only matches an unused, unexpired link: a concurrent use that got there
    first (PostgreSQL re-checks the row after the other commits; SQLite serialises the
    writers) makes this one match nothing."""
    if not well_formed(token):
        return None
    row = session.execute(
        update(SignInLink)
        .where(*_usable(token, now))
        .values(used_at=now)
        .returning(SignInLink.id, SignInLink.email, SignInLink.role, SignInLink.owner_id)
    ).first()
    if row is None:
        return None
    if not still_used_by(session, row.email, row.role, row.owner_id, admin_emails):
        return None
    return Grant(row.id, row.role, row.owner_id)


def still_used_by(
    session: Session, email: str, role: str, owner_id: str | None, admin_emails: Collection[str]
) -> bool:
    """True while ``email`` still signs in as ``role``/``owner_id``."""
    if role == "admin":
        return owner_id is None and email in admin_emails
    model: type[Fan] | type[Artist] = Fan if role == "fan" else Artist
    found = session.scalar(select(model.id).where(model.id == owner_id, model.email == email))
    return found is not None


def session_is_live(
    session: Session,
    link_id: str,
    role: str,
    owner_id: str | None,
    admin_emails: Collection[str],
) -> bool:
    """True when the session opened by link ``link_id`` as ``role``/``owner_id`` still
    holds: the link was used, the session not ended, and the address still theirs."""
    row = session.execute(
        select(SignInLink.email).where(
            SignInLink.id == link_id,
            SignInLink.role == role,
            SignInLink.owner_id.is_(None) if owner_id is None else SignInLink.owner_id == owner_id,
            SignInLink.used_at.is_not(None),
            SignInLink.ended_at.is_(None),
        )
    ).first()
    return row is not None and still_used_by(session, row.email, role, owner_id, admin_emails)


def end(session: Session, link_id: str, now: datetime) -> bool:
    """End the session link ``link_id`` opened; False if it was not open. The caller
    commits."""
    result = cast(
        CursorResult[Any],
        session.execute(
            update(SignInLink)
            .where(
                SignInLink.id == link_id,
                SignInLink.used_at.is_not(None),
                SignInLink.ended_at.is_(None),
            )
            .values(ended_at=now)
        ),
    )
    return result.rowcount == 1
