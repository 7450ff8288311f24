"""Creating the platform's principals: artists, storefronts, admin keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import plans
from royalties.errors import Conflict
from royalties.graph import normalize_email
from royalties.ids import new_id
from royalties.keys import issue_key
from royalties.models import Artist, Storefront
from royalties.services._tx import transactional


@dataclass(frozen=True)
class Created:
    """A new principal and its API key (the only time the plain key is available)."""

    id: str
    name: str
    api_key: str


@transactional
def create_artist(session: Session, *, name: str, email: str | None = None) -> Created:
    """A new artist with the default reward plan as version 1, and its API key; ``email``
    is where its dashboard sign-in links go."""
    email = normalize_email(email)
    if email and session.scalar(select(Artist.id).where(Artist.email == email)) is not None:
        raise Conflict("an artist with this email exists", fields={"email": ["already used"]})
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
    return Created(artist.id, artist.name, issue_key(session, "artist", artist.id))


@transactional
def create_storefront(session: Session, *, name: str, base_url: str) -> Created:
    storefront = Storefront(id=new_id("sf"), name=name, base_url=base_url)
    session.add(storefront)
    session.flush()
    return Created(storefront.id, storefront.name, issue_key(session, "storefront", storefront.id))


@transactional
def create_admin_key(session: Session) -> str:
    return issue_key(session, "admin", None)
