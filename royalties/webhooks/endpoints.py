"""Webhook endpoints, as their owners manage them (the API's use cases).

- **Who owns one, who sees what.** An endpoint belongs to an admin (``owner_id`` null:
  the platform), an artist or a storefront. An owner sees only its own endpoints (admin:
  every one), and an endpoint gets only the events its owner may see: a storefront the
  events of its purchases and refunds and the rewards on them (``events.storefront_id``),
  an artist those of its content (``events.artist_id``), an admin every event.
  :data:`OWNER_COLUMN` says it once; the fan-out (Python) and the replay (SQL) both read it.
- **The secret** is ``whsec_`` and 24 random bytes in base64, returned once by
  :func:`create_endpoint` and :func:`rotate_secret`. After a rotation the previous
  secret keeps signing (a second signature in the same header) for
  :data:`ROTATION_OVERLAP`, so receivers can switch without losing a delivery.
- **URLs** are ``http`` or ``https`` with a host, without credentials or a fragment, at
  most 2048 characters.
- **Replay** makes every event the endpoint may see and wants, written at or after a
  time, due again now: deliveries that exist go back to ``pending`` with a fresh retry
  schedule, missing ones are created. It is how an owner recovers what a disabled or
  failing endpoint missed.
"""

from __future__ import annotations

import base64
import secrets as random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, delete, func, select, true, update
from sqlalchemy.orm import Session

from royalties.db import insert_or_ignore, table, utcnow
from royalties.errors import NotFound, ValidationFailed
from royalties.ids import looks_like_id, new_id
from royalties.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from royalties.models.events import EVENT_TYPES
from royalties.pagination import Page, keyset, page
from royalties.services._tx import transactional

#: Which event column must equal the owner's id for the owner to see an event (None: all).
OWNER_COLUMN: dict[str, str | None] = {
    "admin": None,
    "artist": "artist_id",
    "storefront": "storefront_id",
}
ROTATION_OVERLAP = timedelta(hours=24)
MAX_URL = 2048
REPLAY_CHUNK = 1000
#: How far an event's ``created_at`` (its transaction's time, taken when the work began)
#: may lag behind an event written before it: a transaction waits for a lock for
#: seconds at most, so an hour is generous. :func:`first_seq_since` relies on it.
CLOCK_LAG = timedelta(hours=1)


@dataclass(frozen=True)
class Owner:
    """Who acts on endpoints: a role of :data:`OWNER_COLUMN` and its owner id (None for
    an admin)."""

    role: str
    id: str | None

    def __post_init__(self) -> None:
        if self.role not in OWNER_COLUMN:
            raise ValueError(f"{self.role!r} cannot own webhook endpoints")


@dataclass(frozen=True)
class WithSecret:
    """An endpoint and its signing secret in plain text (shown this once)."""

    endpoint: WebhookEndpoint
    secret: str


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random.token_bytes(24)).decode()


def sees(endpoint: WebhookEndpoint, event: Event) -> bool:
    """Whether ``endpoint`` gets ``event``: its owner may see it and it wants the type."""
    column = OWNER_COLUMN[endpoint.owner_role]
    if column is not None and getattr(event, column) != endpoint.owner_id:
        return False
    return endpoint.events is None or event.type in endpoint.events


def _visible(endpoint: WebhookEndpoint) -> list[ColumnElement[bool]]:
    """:func:`sees` as SQL conditions on ``events``."""
    column = OWNER_COLUMN[endpoint.owner_role]
    found: list[ColumnElement[bool]] = [true()]
    if column is not None:
        found.append(getattr(Event, column) == endpoint.owner_id)
    if endpoint.events is not None:
        found.append(Event.type.in_(endpoint.events))
    return found


def check_url(url: str) -> str:
    """``url`` when it is one we post to; ValidationFailed on the ``url`` field otherwise."""

    def bad(why: str) -> ValidationFailed:
        return ValidationFailed(f"url {why}", fields={"url": [why]})

    url = url.strip()
    if len(url) > MAX_URL:
        raise bad(f"is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise bad("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise bad("is not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise bad("must start with http:// or https://")
    if not parts.hostname:
        raise bad("must name a host")
    if parts.username is not None or parts.password is not None:
        raise bad("must not hold credentials (put a token in the path or query instead)")
    if parts.fragment:
        raise bad("must not have a #fragment")
    return url


def check_events(types: Sequence[str] | None) -> list[str] | None:
    """The event types an endpoint asks for, in :data:`EVENT_TYPES` order, once each;
    None (every type) stays None. ValidationFailed on the ``events`` field otherwise."""
    if types is None:
        return None
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise ValidationFailed(
            f"unknown event type(s): {', '.join(unknown)}",
            fields={"events": [f"unknown: {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"]},
        )
    if not types:
        raise ValidationFailed(
            "events must name at least one type (leave it out for every type)",
            fields={"events": ["empty; leave it out for every type"]},
        )
    return [t for t in EVENT_TYPES if t in set(types)]


@transactional
def create_endpoint(
    session: Session,
    owner: Owner,
    *,
    url: str,
    events: Sequence[str] | None = None,
    now: datetime | None = None,
) -> WithSecret:
    """A new endpoint of ``owner`` for ``url`` and ``events`` (None: every type)."""
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        owner_role=owner.role,
        owner_id=owner.id,
        url=check_url(url),
        events=check_events(events),
        secret=new_secret(),
        created_at=now or utcnow(),
    )
    session.add(endpoint)
    session.flush()
    return WithSecret(endpoint, endpoint.secret)


def _mine(owner: Owner) -> list[ColumnElement[bool]]:
    if owner.role == "admin":
        return [true()]
    return [
        WebhookEndpoint.owner_role == owner.role,
        WebhookEndpoint.owner_id == owner.id,
    ]


def get_endpoint(
    session: Session, owner: Owner, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint:
    """``owner``'s endpoint ``endpoint_id`` (an admin's: anyone's); NotFound otherwise,
    whether it does not exist or belongs to someone else. ``for_update`` locks its row."""
    found = None
    if looks_like_id(endpoint_id):
        query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, *_mine(owner))
        found = session.scalar(query.with_for_update() if for_update else query)
    if found is None:
        raise NotFound(f"webhook endpoint {endpoint_id} does not exist")
    return found


def list_endpoints(
    session: Session, owner: Owner, *, limit: int, cursor: str | None
) -> Page[WebhookEndpoint]:
    """``owner``'s endpoints (an admin's: every one), newest first."""
    query = select(WebhookEndpoint).where(*_mine(owner))
    query = keyset(
        query, WebhookEndpoint.created_at, WebhookEndpoint.id, limit=limit, cursor=cursor
    )
    return page(list(session.scalars(query)), limit, lambda e: (e.created_at, e.id))


def disabled_endpoints(session: Session, owner: Owner) -> list[WebhookEndpoint]:
    """``owner``'s disabled endpoints, most recently disabled first (for notices)."""
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(*_mine(owner), WebhookEndpoint.disabled_at.is_not(None))
            .order_by(WebhookEndpoint.disabled_at.desc())
        )
    )


@transactional
def delete_endpoint(session: Session, owner: Owner, endpoint_id: str) -> None:
    """Remove the endpoint with its deliveries and their attempts; nothing more is sent.
    Its row is locked first, as a worker recording a batch of it locks it first."""
    endpoint = get_endpoint(session, owner, endpoint_id, for_update=True)
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)


@transactional
def rotate_secret(
    session: Session, owner: Owner, endpoint_id: str, *, now: datetime | None = None
) -> WithSecret:
    """A new secret; the current one keeps signing too for :data:`ROTATION_OVERLAP`."""
    now = now or utcnow()
    endpoint = get_endpoint(session, owner, endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    session.flush()
    return WithSecret(endpoint, endpoint.secret)


@transactional
def enable_endpoint(session: Session, owner: Owner, endpoint_id: str) -> WebhookEndpoint:
    """Deliver to a disabled endpoint again (its pending deliveries first); a no-op for
    one that is enabled."""
    endpoint = get_endpoint(session, owner, endpoint_id)
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    endpoint.failing_since = None
    session.flush()
    return endpoint


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the API shows it: its event, state and every attempt."""

    delivery: WebhookDelivery
    event_id: str
    event_type: str
    attempts: list[WebhookAttempt]


def list_deliveries(
    session: Session, owner: Owner, endpoint_id: str, *, limit: int, cursor: str | None
) -> Page[DeliveryView]:
    """The endpoint's deliveries, newest first, each with its attempts (oldest first)."""
    endpoint = get_endpoint(session, owner, endpoint_id)
    query = (
        select(WebhookDelivery, Event.id, Event.type)
        .join(Event, Event.seq == WebhookDelivery.event_seq)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
    )
    query = keyset(
        query, WebhookDelivery.created_at, WebhookDelivery.id, limit=limit, cursor=cursor
    )
    rows = session.execute(query).all()
    ids = [row[0].id for row in rows[:limit]]
    attempts: dict[int, list[WebhookAttempt]] = {i: [] for i in ids}
    if ids:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(ids))
            .order_by(WebhookAttempt.at, WebhookAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    views = [DeliveryView(d, eid, etype, attempts.get(d.id, [])) for d, eid, etype in rows]
    return page(views, limit, lambda v: (v.delivery.created_at, v.delivery.id))


@transactional
def replay(
    session: Session,
    owner: Owner,
    endpoint_id: str,
    *,
    since: datetime,
    now: datetime | None = None,
) -> int:
    """Make due now every event at or after ``since`` the endpoint may see and wants;
    returns how many deliveries were queued. Runs in chunks of :data:`REPLAY_CHUNK`."""
    now = now or utcnow()
    endpoint = get_endpoint(session, owner, endpoint_id)
    seqs = list(
        session.scalars(
            select(Event.seq)
            .where(
                Event.seq >= first_seq_since(session, since),
                Event.created_at >= since,
                *_visible(endpoint),
            )
            .order_by(Event.seq)
        )
    )
    fresh: dict[str, Any] = {
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "claimed_until": None,
        "delivered_at": None,  # the attempt log keeps when it was delivered before
    }
    for start in range(0, len(seqs), REPLAY_CHUNK):
        chunk = seqs[start : start + REPLAY_CHUNK]
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_seq.in_(chunk))
            .values(**fresh)
            .execution_options(synchronize_session=False)
        )
        rows = [
            {"endpoint_id": endpoint.id, "event_seq": seq, "created_at": now, **fresh}
            for seq in chunk
        ]
        session.execute(insert_or_ignore(session, table(WebhookDelivery)), rows)
    return len(seqs)


def first_seq_since(session: Session, since: datetime) -> int:
    """A ``seq`` before which no event has ``created_at >= since``: a binary search over
    the primary key (about twenty lookups per million events), so that ``created_at`` needs no
    index that every sale would pay for.

    ``seq`` follows the order events were written, and ``created_at`` that order to
    within :data:`CLOCK_LAG`. The search stops at an event written before
    ``since - CLOCK_LAG``: every event before it is older than ``since``. ``seq`` has
    gaps (rolled-back inserts), so each probe reads the first event at or after it."""
    lowest, highest = session.execute(select(func.min(Event.seq), func.max(Event.seq))).one()
    if lowest is None:
        return 0
    cutoff = since - CLOCK_LAG
    # Invariant: every event before ``low`` is older than ``since``; the first event at
    # or after ``high`` is not older than ``cutoff`` (``highest + 1``: there is none).
    low, high = lowest, highest + 1
    while low < high:
        probe = (low + high) // 2
        found = session.execute(
            select(Event.seq, Event.created_at)
            .where(Event.seq >= probe)
            .order_by(Event.seq)
            .limit(1)
        ).first()
        if found is not None and found.created_at < cutoff:
            low = found.seq + 1
        else:
            high = probe
    return int(low)
