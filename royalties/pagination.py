"""Keyset pagination, one way for every list of the API.

A list is ordered by ``(created_at, id)`` -- newest first, or oldest first for a queue
-- and a page ends with an opaque cursor naming its last row's ``(created_at, id)``.
The next page is the rows strictly after that pair, so inserts while a client pages
never repeat or skip a row, and no page costs more than ``limit + 1`` indexed rows.
A cursor we did not issue is a ``ValidationFailed`` on the ``cursor`` field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_

from royalties.errors import ValidationFailed

T = TypeVar("T")
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode(created_at: datetime, row_id: object) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed(
            "bad cursor", fields={"cursor": ["not a cursor we issued"]}
        ) from None


def keyset(
    query: Q,
    created_at: Any,
    row_id: Any,
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
) -> Q:
    """``query`` ordered by ``(created_at, row_id)`` and cut to the page after
    ``cursor``, with one row more than ``limit`` (to know whether another page follows)."""
    if cursor:
        stamp, text = decode(cursor)
        try:  # the id as its column holds it (an integer id compared with text would not do)
            last = row_id.type.python_type(text)
        except (ValueError, TypeError):
            raise ValidationFailed(
                "bad cursor", fields={"cursor": ["not a cursor we issued"]}
            ) from None
        if newest_first:
            after = or_(created_at < stamp, and_(created_at == stamp, row_id < last))
        else:
            after = or_(created_at > stamp, and_(created_at == stamp, row_id > last))
        query = query.where(after)
    order = (created_at.desc(), row_id.desc()) if newest_first else (created_at, row_id)
    return query.order_by(*order).limit(limit + 1)


def page(rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime, object]]) -> Page[T]:
    """The first ``limit`` rows of what ``keyset`` fetched, and the cursor after them."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items, encode(*key(items[-1])) if more and items else None)
