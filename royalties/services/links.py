"""Share links and the clicks on them (SPEC section 7).

- A code is 10 characters of the id alphabet drawn from the OS random source (50 bits):
  short enough to paste, too many to guess. Anything else in a path is unknown before
  the database is asked.
- Each request for a link makes a new one, so a fan can tell channels apart; a fan's
  older links for the same content keep working until disabled.
- A link is disabled by its fan, by the artist who owns its content, or by an admin.
  Disabling is one-way and idempotent; a disabled link redirects nowhere, records no
  click and sponsors no sign-up.
- A click is the highest-volume write: one indexed SELECT (the active link joined to its
  content) and one INSERT, prebuilt Core statements and no ORM unit of work; on
  PostgreSQL both in one statement (one round trip). A server batches them by default
  (``royalties.clicks``: the target kept in memory, the clicks written a few times a
  second by ``record_clicks``). Only a salted hash of the client address is kept,
  never the address itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

from sqlalchemy import Connection, String, bindparam, func, insert, select
from sqlalchemy.orm import Session

from royalties.db import UTCDateTime, insert_rows, table, utcnow
from royalties.errors import Conflict, Forbidden, NotFound
from royalties.ids import random_token
from royalties.models import Click, Content, Fan, Purchase, ShareLink
from royalties.services._tx import transactional

CODE_LENGTH = 10
MAX_USER_AGENT = 512
_CODE_RE = re.compile(rf"^[0-9a-hjkmnp-tv-z]{{{CODE_LENGTH}}}$")
_CODE_ATTEMPTS = 5


def looks_like_code(value: str) -> bool:
    """True when ``value`` has the shape of a share code."""
    return bool(_CODE_RE.fullmatch(value))


def share_url(public_base_url: str, code: str) -> str:
    """The public address of a share link, e.g. ``https://example.com/l/8k3m...``."""
    return f"{public_base_url.rstrip('/')}/l/{code}"


def add_ref(url: str, code: str) -> str:
    """``url`` with ``ref=<code>`` in its query, replacing any ``ref`` already there.

    The other query parameters keep their order and their exact encoding, and the
    fragment is kept.
    """
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) != "ref"
    ]
    kept.append(urlencode({"ref": code}))
    return urlunsplit(parts._replace(query="&".join(kept)))


def hash_client_address(salt: str, address: str) -> str:
    """The SHA-256 (hex) of ``salt`` + ``address``: what a click keeps of its client."""
    return hashlib.sha256(f"{salt}{address}".encode()).hexdigest()


def _random_codes() -> Iterator[str]:
    while True:
        yield random_token(CODE_LENGTH)


def new_code(session: Session, candidates: Iterable[str] | None = None) -> str:
    """The first of ``candidates`` (random codes by default) that no link uses yet.

    The primary key still guards the (50-bit) chance that a concurrent request picks
    the same code between this check and the insert.
    """
    source = candidates if candidates is not None else _random_codes()
    for code in islice(source, _CODE_ATTEMPTS):
        if session.get(ShareLink, code) is None:
            return code
    raise Conflict("could not allocate a share code; retry")


@transactional
def create_share_link(session: Session, *, fan_id: str, content_id: str) -> ShareLink:
    """A new active link from ``fan_id`` to ``content_id`` (a new one on every call)."""
    content = session.get(Content, content_id)
    if content is None:
        raise NotFound(f"content {content_id} does not exist")
    link = ShareLink(
        code=new_code(session),
        fan_id=fan_id,
        content_id=content.id,
        artist_id=content.artist_id,
        active=True,
    )
    session.add(link)
    session.flush()
    return link


def get_share_link(session: Session, code: str) -> ShareLink:
    if not looks_like_code(code):
        raise NotFound("no such share link")
    link = session.get(ShareLink, code)
    if link is None:
        raise NotFound("no such share link")
    return link


def check_may_manage(link: ShareLink, *, acting_role: str, acting_owner_id: str | None) -> None:
    """Allow admins, the link's fan, and the artist who owns the linked content."""
    if acting_role == "admin":
        return
    if acting_role == "fan" and acting_owner_id == link.fan_id:
        return
    if acting_role == "artist" and acting_owner_id == link.artist_id:
        return
    raise Forbidden("this share link belongs to someone else")


@transactional
def disable_share_link(
    session: Session, *, code: str, acting_role: str, acting_owner_id: str | None
) -> ShareLink:
    """Disable a link for good; disabling a disabled link changes nothing."""
    link = get_share_link(session, code)
    check_may_manage(link, acting_role=acting_role, acting_owner_id=acting_owner_id)
    if link.active:
        link.active = False
        link.disabled_at = utcnow()
        session.flush()
    return link


def link_with_stats(session: Session, code: str) -> tuple[ShareLink, int]:
    """A link and how many clicks it has recorded (the caller checks who may see it)."""
    link = get_share_link(session, code)
    clicks = session.scalar(select(func.count()).select_from(Click).where(Click.code == code))
    return link, clicks or 0


def _click_statements() -> tuple[Any, Any, Any]:
    """The click's statements, built once: its target's URL, its INSERT, and on
    PostgreSQL both in one (a data-modifying CTE: one round trip) that also tells the
    commit not to wait for the WAL flush."""
    target = (
        select(Content.storefront_url)
        .join_from(ShareLink, Content, ShareLink.content_id == Content.id)
        .where(ShareLink.code == bindparam("code", type_=String), ShareLink.active.is_(True))
    )
    record = insert(table(Click))
    found = target.cte("target")
    values = select(
        bindparam("code", type_=String),
        bindparam("at", type_=UTCDateTime()),
        bindparam("ip_hash", type_=String),
        bindparam("user_agent", type_=String),
    ).select_from(found)
    recorded = record.from_select(["code", "at", "ip_hash", "user_agent"], values)
    # A click's commit need not wait for the disk (this transaction only): a crash of
    # PostgreSQL may lose the last second's clicks, counters with no money in them, and
    # each click's commit costs no WAL flush (bench/purchases.py: clicks/s +34%).
    relaxed = func.set_config("synchronous_commit", "off", True)
    both = select(found.c.storefront_url, relaxed).add_cte(recorded.cte("recorded"))
    return target, record, both


_TARGET, _RECORD, _TARGET_AND_RECORD = _click_statements()


def click_row(code: str, ip_hash: str, user_agent: str) -> dict[str, Any] | None:
    """The row a click on ``code`` records, timed now; None when ``code`` has not the
    shape of a share code (no database asked)."""
    if not looks_like_code(code):
        return None
    # PostgreSQL text cannot hold NUL; a header is the client's to fill.
    agent = user_agent.replace("\x00", "")[:MAX_USER_AGENT]
    return {"code": code, "at": utcnow(), "ip_hash": ip_hash, "user_agent": agent}


@transactional
def resolve_click(session: Session, *, code: str, ip_hash: str, user_agent: str) -> str | None:
    """Record a click on an active link and return where to send the client.

    None (and no click) for a code that is malformed, unknown or disabled.
    """
    click = click_row(code, ip_hash, user_agent)
    if click is None:
        return None
    conn = session.connection()  # Core on the session's transaction: no ORM on this path
    if conn.dialect.name == "postgresql":
        target = conn.execute(_TARGET_AND_RECORD, click).scalar()
        return None if target is None else add_ref(target, code)
    # In process: two statements cost less than one with a CTE.
    found = link_target(conn, code)
    if found is not None:
        conn.execute(_RECORD, click)
    return found


def link_target(conn: Connection, code: str) -> str | None:
    """Where a click on the active link ``code`` goes (``ref`` added); None for an
    unknown or disabled link. Reads only."""
    target = conn.execute(_TARGET, {"code": code}).scalar()
    return None if target is None else add_ref(target, code)


def record_clicks(conn: Connection, clicks: Sequence[Mapping[str, Any]]) -> int:
    """Write the ``clicks`` (``click_row``s, queued while their links were active, as
    ``link_target`` found them) in the caller's transaction: one SELECT of the links per
    500 codes, one INSERT. A click on a link disabled since is written only when it came
    before the disabling. Returns how many were written."""
    codes = sorted({click["code"] for click in clicks})
    until: dict[str, datetime | None] = {}  # code -> disabled at (None: active)
    for at in range(0, len(codes), 500):
        part = codes[at : at + 500]
        found = select(ShareLink.code, ShareLink.active, ShareLink.disabled_at).where(
            ShareLink.code.in_(part)
        )
        for code, active, disabled_at in conn.execute(found):
            until[code] = None if active else (disabled_at or datetime.min.replace(tzinfo=UTC))
    rows = [
        click
        for click in clicks
        if click["code"] in until and ((end := until[click["code"]]) is None or click["at"] < end)
    ]
    insert_rows(conn, table(Click), rows)
    return len(rows)


def links_to(session: Session, content_id: str) -> list[tuple[ShareLink, str]]:
    """Every share link of one content item, newest first, with its fan's handle."""
    rows = session.execute(
        select(ShareLink, Fan.handle)
        .join(Fan, Fan.id == ShareLink.fan_id)
        .where(ShareLink.content_id == content_id)
        .order_by(ShareLink.created_at.desc(), ShareLink.code)
    )
    return [(link, handle) for link, handle in rows]


def artists_shared_by(session: Session, fan_id: str) -> list[str]:
    """The artists whose content the fan has share links for."""
    return list(
        session.scalars(select(ShareLink.artist_id).where(ShareLink.fan_id == fan_id).distinct())
    )


def link_stats(session: Session, fan_id: str, public_base_url: str) -> list[dict[str, Any]]:
    """The fan's share links, newest first, each with its content, URL, clicks and sales."""
    clicks = (
        select(Click.code, func.count().label("n"))
        .join(ShareLink, ShareLink.code == Click.code)
        .where(ShareLink.fan_id == fan_id)
        .group_by(Click.code)
        .subquery()
    )
    sales = (
        select(Purchase.share_code, func.count().label("n"))
        .join(ShareLink, ShareLink.code == Purchase.share_code)
        .where(ShareLink.fan_id == fan_id)
        .group_by(Purchase.share_code)
        .subquery()
    )
    rows = session.execute(
        select(ShareLink, Content.title, Content.kind, clicks.c.n, sales.c.n)
        .join(Content, Content.id == ShareLink.content_id)
        .outerjoin(clicks, clicks.c.code == ShareLink.code)
        .outerjoin(sales, sales.c.share_code == ShareLink.code)
        .where(ShareLink.fan_id == fan_id)
        .order_by(ShareLink.created_at.desc(), ShareLink.code)
    ).all()
    return [
        {
            "link": link,
            "url": share_url(public_base_url, link.code),
            "title": title,
            "kind": kind,
            "clicks": int(n_clicks or 0),
            "sales": int(n_sales or 0),
        }
        for link, title, kind, n_clicks, n_sales in rows
    ]
