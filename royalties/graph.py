"""Sponsor rules and upline lookups on the referral forest (SPEC section 2).

Invariants, in plain words:

- Each fan has at most one sponsor, set once (first touch) and never changed.
- A fan is never its own sponsor and a sponsor never closes a loop, so the graph is a
  forest. ``fans.root_id`` names each fan's tree root: giving root F the sponsor S
  closes a loop exactly when ``S.root_id == F.id``.
- ``fan_ancestors`` holds each fan's first five ancestors with their depth. A new fan
  copies its sponsor's rows (one indexed read, at most five inserts). Giving an existing
  root a sponsor ("re-rooting", rare) splices the sponsor's upline onto the root's
  downline to depth five and moves the whole tree to the new root id.

Concurrency: re-rooting takes an exclusive transaction-scoped advisory lock on
PostgreSQL, and attaching a new fan takes it shared, so a new fan never copies an
upline that a concurrent re-root is rewriting. SQLite serialises writers anyway.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from royalties import events
from royalties.db import advisory_lock, insert_rows, table
from royalties.errors import Conflict, GraphError, NotFound
from royalties.ids import new_id
from royalties.models import Fan, FanAncestor
from royalties.models.graph import MAX_DEPTH


def _lock(session: Session, *, exclusive: bool) -> None:
    advisory_lock(session.connection(), "graph", "reroot", shared=not exclusive)


def normalize_email(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def ancestors_of(fan_id: Any, depth: Any) -> Select[int, str]:
    """The closure-table read every upline goes through: ``(depth, ancestor_id)`` of the
    fan's ancestors up to ``depth`` (1 is the sponsor), one indexed range. ``fan_id`` and
    ``depth`` are values or bind parameters; callers order it (by depth: nearest first)
    and may add columns of their own."""
    return select(FanAncestor.depth, FanAncestor.ancestor_id).where(
        FanAncestor.fan_id == fan_id, FanAncestor.depth <= depth
    )


def upline(session: Session, fan_id: str, depth: int = MAX_DEPTH) -> list[str]:
    """The fan's sponsor, sponsor's sponsor, ... up to ``depth`` levels, nearest first."""
    rows = session.execute(ancestors_of(fan_id, depth).order_by(FanAncestor.depth))
    return [ancestor for _depth, ancestor in rows]


def sponsor_by_first_touch(
    session: Session, fan_id: str, sponsor_id: str | None, via: str | None
) -> str | None:
    """First touch (SPEC 2): a fan without a sponsor gets the owner of the share link
    that brought it, when the rules allow (not itself, no loop); a sponsor, once set,
    never changes. Returns the fan's sponsor after. Does not commit."""
    if via is None or not first_touch_applies(fan_id, sponsor_id, via):
        return sponsor_id
    return via if assign_sponsor(session, fan_id, via, strict=False) else None


def first_touch_applies(fan_id: str, sponsor_id: str | None, via: str | None) -> bool:
    """Whether a sale to ``fan_id`` through ``via``'s link may give the fan a sponsor
    (``sponsor_by_first_touch`` then tries; the loop rule may still refuse)."""
    return sponsor_id is None and via is not None and via != fan_id


def downline_counts(session: Session, fan_id: str) -> dict[int, int]:
    """How many fans sit 1..5 levels below ``fan_id`` (every level present, zeros included)."""
    rows = session.execute(
        select(FanAncestor.depth, func.count())
        .where(FanAncestor.ancestor_id == fan_id)
        .group_by(FanAncestor.depth)
    ).all()
    counts = dict.fromkeys(range(1, MAX_DEPTH + 1), 0)
    counts.update({depth: n for depth, n in rows})
    return counts


def create_fan(
    session: Session,
    *,
    handle: str,
    email: str | None = None,
    sponsor_id: str | None = None,
    storefront_id: str | None = None,
    external_id: str | None = None,
    enrolled_by: str | None = None,
    events_out: list[events.Pending] | None = None,
) -> Fan:
    """Add a new fan, attached under ``sponsor_id`` when given, and its ``fan.enrolled``
    event (seen by ``enrolled_by``, the storefront whose sale brought the buyer in, and
    by admins): written now, or appended to ``events_out`` for a caller that writes its
    transaction's events together. Does not commit."""
    email = normalize_email(email)
    if session.scalar(select(Fan.id).where(Fan.handle == handle)) is not None:
        raise Conflict(f"handle {handle!r} is taken", fields={"handle": ["already taken"]})
    if email and session.scalar(select(Fan.id).where(Fan.email == email)) is not None:
        raise Conflict("a fan with this email exists", fields={"email": ["already registered"]})
    fan_id = new_id("fan")
    fan = Fan(
        id=fan_id,
        handle=handle,
        email=email,
        root_id=fan_id,
        storefront_id=storefront_id,
        external_id=external_id,
    )
    if sponsor_id is None:
        session.add(fan)
        session.flush()
        _enrolled(session, fan, enrolled_by, events_out)
        return fan
    _lock(session, exclusive=False)
    sponsor = session.get(Fan, sponsor_id)
    if sponsor is None:
        raise NotFound(f"sponsor {sponsor_id} does not exist")
    fan.sponsor_id = sponsor.id
    fan.root_id = sponsor.root_id
    session.add(fan)
    session.flush()
    rows = [{"fan_id": fan_id, "ancestor_id": sponsor.id, "depth": 1}]
    rows += [
        {"fan_id": fan_id, "ancestor_id": ancestor, "depth": depth + 1}
        for depth, ancestor in enumerate(upline(session, sponsor.id, MAX_DEPTH - 1), start=1)
    ]
    session.execute(insert(FanAncestor), rows)
    _enrolled(session, fan, enrolled_by, events_out)
    return fan


def _enrolled(
    session: Session,
    fan: Fan,
    storefront_id: str | None,
    events_out: list[events.Pending] | None,
) -> None:
    event = enrolled_event(fan, storefront_id)
    if events_out is None:
        events.record_all(session, [event])
    else:
        events_out.append(event)


def enrolled_event(fan: Any, storefront_id: str | None) -> events.Pending:
    """The ``fan.enrolled`` event of a new fan (a Fan, or a row with its attributes), seen
    by ``storefront_id`` (the storefront whose sale brought the buyer in) and by admins:
    the fan as ``GET /v1/fans/{id}`` shows it (a new fan has no one below it yet: zero
    at every level)."""
    data: dict[str, Any] = {
        "id": fan.id,
        "handle": fan.handle,
        "email": fan.email,
        "sponsor_id": fan.sponsor_id,
        "created_at": fan.created_at,
        "notifications": fan.notify_email is not False,  # on until the fan says otherwise
        "downline": [{"level": level, "count": 0} for level in range(1, MAX_DEPTH + 1)],
    }
    return events.Pending("fan.enrolled", data, events.Whose(storefront_id=storefront_id))


@dataclass(frozen=True)
class Sponsor:
    """What a new fan copies from its sponsor: the tree and the upline."""

    id: str
    root_id: str
    upline: tuple[str, ...]  # the sponsor's own ancestors, nearest first, to MAX_DEPTH - 1


def sponsors(session: Session, fan_ids: Collection[str]) -> dict[str, Sponsor]:
    """These fans as sponsors of new fans, in two indexed reads whatever their number;
    an id that names no fan is left out. Take the graph's shared lock first
    (``lock_for_new_fans``)."""
    if not fan_ids:
        return {}
    roots = dict(session.execute(select(Fan.id, Fan.root_id).where(Fan.id.in_(fan_ids))).all())
    above: dict[str, list[str]] = {fan_id: [] for fan_id in roots}
    for fan_id, _depth, ancestor in session.execute(
        select(FanAncestor.fan_id, FanAncestor.depth, FanAncestor.ancestor_id)
        .where(FanAncestor.fan_id.in_(list(roots)), FanAncestor.depth <= MAX_DEPTH - 1)
        .order_by(FanAncestor.fan_id, FanAncestor.depth)
    ):
        above[fan_id].append(ancestor)
    return {fan_id: Sponsor(fan_id, roots[fan_id], tuple(above[fan_id])) for fan_id in roots}


def lock_for_new_fans(session: Session) -> None:
    """The lock ``create_fan`` takes before it copies a sponsor's upline (shared: new
    fans do not wait for each other, only for a re-root)."""
    _lock(session, exclusive=False)


def new_fan_row(
    *,
    handle: str,
    email: str | None,
    sponsor: Sponsor | None,
    storefront_id: str | None,
    external_id: str | None,
    now: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A new fan's ``fans`` row and ``fan_ancestors`` rows, for ``insert_fans``: what
    ``create_fan`` writes, where the caller has checked what it checks (handle and
    email free, the sponsor read with ``sponsors``)."""
    fan_id = new_id("fan")
    row = {
        "id": fan_id,
        "handle": handle,
        "email": normalize_email(email),
        "sponsor_id": sponsor.id if sponsor else None,
        "root_id": sponsor.root_id if sponsor else fan_id,
        "storefront_id": storefront_id,
        "external_id": external_id,
        "created_at": now,
    }
    closure = []
    if sponsor is not None:
        closure = [
            {"fan_id": fan_id, "ancestor_id": ancestor, "depth": depth}
            for depth, ancestor in enumerate((sponsor.id, *sponsor.upline), start=1)
        ]
    return row, closure


def insert_fans(
    session: Session, rows: Sequence[Mapping[str, Any]], closure: Sequence[Mapping[str, Any]]
) -> None:
    """Write new fans made by ``new_fan_row`` (two statements). Does not commit."""
    conn = session.connection()
    insert_rows(conn, table(Fan), rows)
    insert_rows(conn, table(FanAncestor), closure)


def assign_sponsor(session: Session, fan_id: str, sponsor_id: str, *, strict: bool = True) -> bool:
    """Give the sponsor-less fan ``fan_id`` the sponsor ``sponsor_id``. Does not commit.

    Returns True when the sponsor was set. When the rules forbid it (already sponsored,
    self, loop) raises GraphError if ``strict``, else returns False and changes nothing:
    the purchase flow uses ``strict=False`` because a refused sponsor there is normal.
    """
    if fan_id == sponsor_id:
        return _refuse(strict, "a fan cannot sponsor itself")
    _lock(session, exclusive=True)
    fan = session.get(Fan, fan_id, populate_existing=True, with_for_update=True)
    sponsor = session.get(Fan, sponsor_id, populate_existing=True)
    if fan is None or sponsor is None:
        raise NotFound("no such fan")
    if fan.sponsor_id is not None:
        return _refuse(strict, "the sponsor is set once and never changed")
    if sponsor.root_id == fan.id:
        return _refuse(strict, "that sponsor is in this fan's downline: it would close a loop")

    sponsor_chain = [
        (ancestor, depth)
        for depth, ancestor in enumerate(
            [sponsor.id, *upline(session, sponsor.id, MAX_DEPTH - 1)], 1
        )
    ]
    below_fan = session.execute(
        select(FanAncestor.fan_id, FanAncestor.depth).where(
            FanAncestor.ancestor_id == fan.id, FanAncestor.depth <= MAX_DEPTH - 1
        )
    ).all()
    downline = [(fan.id, 0), *below_fan]
    rows = [
        {"fan_id": member, "ancestor_id": ancestor, "depth": below + above}
        for member, below in downline
        for ancestor, above in sponsor_chain
        if below + above <= MAX_DEPTH
    ]
    fan.sponsor_id = sponsor.id
    session.flush()
    session.execute(insert(FanAncestor), rows)
    session.execute(update(Fan).where(Fan.root_id == fan.id).values(root_id=sponsor.root_id))
    return True


def _refuse(strict: bool, why: str) -> bool:
    if strict:
        raise GraphError(why, fields={"sponsor": [why]})
    return False
