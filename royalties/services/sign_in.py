"""Signing in by email: ask for a link, use it, end the session it opened.

The rules are ``royalties/sign_in.py``'s; these own the transactions. ``now`` may be
given (tests move the clock), else it is the current time.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy.orm import Session

from royalties import sign_in
from royalties.db import utcnow
from royalties.services._tx import transactional
from royalties.sign_in import Grant, Issued


@transactional
def request_link(
    session: Session, *, email: str, admin_emails: Collection[str], now: datetime | None = None
) -> list[Issued]:
    """Links for everyone ``email`` (already parsed) signs in as; [] for an unknown address,
    which writes nothing. The caller sends them and answers the same in both cases."""
    people = sign_in.identities(session, email, admin_emails)
    return sign_in.issue(session, email, people, now or utcnow())


def link_is_usable(session: Session, token: str, now: datetime | None = None) -> bool:
    """True when ``token`` could sign in now (a read: the link stays unused)."""
    return sign_in.usable(session, token, now or utcnow())


@transactional
def use_link(
    session: Session, *, token: str, admin_emails: Collection[str], now: datetime | None = None
) -> Grant | None:
    """Use the link (once): what it signs in as, or None when it cannot be used."""
    return sign_in.use(session, token, now or utcnow(), admin_emails)


@transactional
def end_session(session: Session, link_id: str, now: datetime | None = None) -> bool:
    """Sign-out: the session the link opened ends, even for a copy of its cookie."""
    return sign_in.end(session, link_id, now or utcnow())
