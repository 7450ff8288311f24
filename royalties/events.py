"""Events out, the writing side: every change of money or membership becomes an event
row in the same transaction as the change (the transactional outbox).

The rule: code that changes a purchase, refund, reward, fan or payout calls
:func:`record` (or :func:`record_all`) before its transaction commits, inside it. So a
rolled-back purchase leaves no event, and a committed one always has its events: the
books and the events can never disagree. Nothing here sends anything; the worker
(``royalties.webhooks``) fans events out to endpoints and delivers them.

An event's body is fixed when it is written: ``{"id", "type", "created_at", "data"}``
as compact JSON, where ``data`` is the object as the API shows it at that moment
(datetimes in ISO 8601, as the API writes them). Every attempt of every delivery sends
and signs these same bytes, and the id (``evt_...``) is the ``webhook-id`` receivers
deduplicate on.

Whose an event is (``Whose``) decides who may see it: a storefront its purchases,
refunds and the rewards on them; an artist the sales of its content and their rewards;
the fan the rewards it earns and its payouts (for its notifications); an admin all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from royalties.db import insert_rows, table, utcnow
from royalties.ids import new_ordered_id
from royalties.models.events import EVENT_TYPES, Event


@dataclass(frozen=True)
class Whose:
    """Who an event concerns, and so who may see it."""

    storefront_id: str | None = None
    artist_id: str | None = None
    fan_id: str | None = None


@dataclass(frozen=True)
class Pending:
    """An event to write: its type, its data (the API's object) and whose it is."""

    type: str
    data: Mapping[str, Any]
    whose: Whose
    at: datetime | None = None  # when it happened, if not when it is written


def _jsonable(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_KNOWN = frozenset(EVENT_TYPES)

# Built once: json.dumps with arguments builds an encoder per call, a dozen per sale.
_encode = json.JSONEncoder(default=_jsonable, separators=(",", ":")).encode


def body(event_id: str, type_: str, created_at: datetime, data: Mapping[str, Any]) -> str:
    """The exact JSON receivers get (compact; keys in the order written)."""
    return _encode({"id": event_id, "type": type_, "created_at": created_at, "data": data})


def record_all(session: Session, events: Iterable[Pending], *, now: datetime | None = None) -> int:
    """Write these events in the session's transaction, in order, in one statement, each
    at its ``at`` or else ``now``. Does not commit. Returns how many were written."""
    rows = event_rows(events, now=now)
    insert_rows(session.connection(), table(Event), rows)
    return len(rows)


def event_rows(events: Iterable[Pending], *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The ``events`` table's rows for these events, as ``record_all`` writes them."""
    now = now or utcnow()
    rows = []
    for event in events:
        if event.type not in _KNOWN:
            raise ValueError(f"unknown event type {event.type!r}")
        event_id = new_ordered_id("evt")
        at = event.at or now
        rows.append(
            {
                "id": event_id,
                "type": event.type,
                "created_at": at,
                "body": body(event_id, event.type, at, event.data),
                "storefront_id": event.whose.storefront_id,
                "artist_id": event.whose.artist_id,
                "fan_id": event.whose.fan_id,
                "fanned_out": False,
            }
        )
    return rows


def record(
    session: Session,
    type_: str,
    data: Mapping[str, Any],
    whose: Whose,
    *,
    now: datetime | None = None,
) -> None:
    """Write one event in the session's transaction. Does not commit."""
    record_all(session, [Pending(type_, data, whose)], now=now)
