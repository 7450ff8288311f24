"""Creating the platform's principals (artists, storefronts, admin keys) and inviting
artists to the dashboard by email. Each is audited when an actor is given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import audit, plans, sign_in
from royalties.audit import Actor
from royalties.db import utcnow
from royalties.errors import Conflict, NotFound, ValidationFailed
from royalties.graph import normalize_email
from royalties.ids import new_id
from royalties.keys import issue, issue_key
from royalties.models import Artist, Storefront
from royalties.pagination import Page, keyset, page
from royalties.services._tx import transactional


@dataclass(frozen=True)
class Invitation:
    """An invitation made for an artist: where it goes, until when its link works, and
    the link's token (the only copy of the secret: mail it, never show or log it)."""

    artist_id: str
    name: str
    email: str
    expires_at: datetime
    token: str


@dataclass(frozen=True)
class Created:
    """A new principal and its API key (the only time the plain key is available), and
    the artist's invitation when one was asked for."""

    id: str
    name: str
    api_key: str
    invitation: Invitation | None = None


@dataclass(frozen=True)
class ArtistRow:
    """An artist as the operator's accounts page lists it."""

    id: str
    name: str
    email: str | None
    created_at: datetime
    invited_at: datetime | None


def _check_email_free(session: Session, email: str, artist_id: str | None = None) -> None:
    taken = select(Artist.id).where(Artist.email == email)
    if artist_id is not None:
        taken = taken.where(Artist.id != artist_id)
    if session.scalar(taken) is not None:
        raise Conflict("an artist with this email exists", fields={"email": ["already used"]})


@transactional
def create_artist(
    session: Session,
    *,
    name: str,
    email: str | None = None,
    actor: Actor | None = None,
    invite_for: timedelta | None = None,
) -> Created:
    """A new artist with the default reward plan as version 1, and its API key; ``email``
    is where its dashboard sign-in links go. With ``invite_for``, also its invitation
    (see :func:`invite_artist`), in the same transaction: ValidationFailed, and nothing
    made, when there is no email to send it to."""
    email = normalize_email(email)
    if email:
        _check_email_free(session, email)
    artist = Artist(id=new_id("art"), name=name, email=email)
    session.add(artist)
    session.flush()
    plans.add_plan_version(
        session,
        artist_id=artist.id,
        content_id=None,
        level_rates_bps=plans.DEFAULT_RATES_BPS,
        hold_days=plans.DEFAULT_HOLD_DAYS,
    )
    audit.record(session, actor, "artist.created", artist.id, {"name": name, "email": email})
    invitation = None
    if invite_for is not None:
        invitation = _invite(session, artist, None, invite_for, actor, utcnow())
    api_key = issue_key(session, "artist", artist.id)
    return Created(artist.id, artist.name, api_key, invitation)


@transactional
def invite_artist(
    session: Session,
    *,
    artist_id: str,
    email: str | None,
    link_ttl: timedelta,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> Invitation:
    """Set (or change) the artist's email when ``email`` is given, and make a single-use
    sign-in link for it that works for ``link_ttl``. NotFound for an unknown artist,
    ValidationFailed when it has no email and none is given, Conflict when another
    artist uses the address."""
    artist = session.get(Artist, artist_id, with_for_update=True)
    if artist is None:
        raise NotFound(f"artist {artist_id} does not exist")
    return _invite(session, artist, email, link_ttl, actor, now or utcnow())


def artists(session: Session, *, limit: int, cursor: str | None) -> Page[ArtistRow]:
    """Artists newest first, each with when it was last invited."""
    query = keyset(select(Artist), Artist.created_at, Artist.id, limit=limit, cursor=cursor)
    found = page(list(session.scalars(query)), limit, lambda a: (a.created_at, a.id))
    invited = audit.latest(session, "artist.invited", [a.id for a in found.items])
    rows = [ArtistRow(a.id, a.name, a.email, a.created_at, invited.get(a.id)) for a in found.items]
    return Page(rows, found.next_cursor)


def _invite(
    session: Session,
    artist: Artist,
    email: str | None,
    link_ttl: timedelta,
    actor: Actor | None,
    now: datetime,
) -> Invitation:
    address = normalize_email(email)
    if address:  # checked by the caller's schema, as at creation
        _check_email_free(session, address, artist.id)
        artist.email = address
    elif artist.email is None:
        raise ValidationFailed(
            "This artist has no email address yet: give one.",
            fields={"email": ["Give the address to send the invitation to."]},
        )
    person = sign_in.Identity("artist", artist.id, artist.name)
    (issued,) = sign_in.issue(session, artist.email, [person], now, ttl=link_ttl)
    audit.record(session, actor, "artist.invited", artist.id, {"email": artist.email})
    return Invitation(artist.id, artist.name, artist.email, now + link_ttl, issued.token)


@transactional
def create_storefront(
    session: Session, *, name: str, base_url: str, actor: Actor | None = None
) -> Created:
    storefront = Storefront(id=new_id("sf"), name=name, base_url=base_url)
    session.add(storefront)
    session.flush()
    detail = {"name": name, "base_url": base_url}
    audit.record(session, actor, "storefront.created", storefront.id, detail)
    return Created(storefront.id, storefront.name, issue_key(session, "storefront", storefront.id))


@transactional
def create_admin_key(session: Session, *, actor: Actor | None = None) -> str:
    row, plain = issue(session, "admin", None)
    session.flush()
    audit.record(session, actor, "key.created", row.id, {"role": "admin"})
    return plain
