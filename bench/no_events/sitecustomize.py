"""The benchmark's "without events" server only (``bench/purchases.py --events-rounds``
puts this directory on its PYTHONPATH): ``royalties.events`` writes nothing, so the
bench can show what writing the events costs the purchase path (issue 14: at most 10%).
Nothing in the product imports this, and no setting turns events off."""

from __future__ import annotations

from typing import Any

import royalties.events


def _write_nothing(_session: Any, events: Any, *, now: Any = None) -> int:
    return len(list(events))


def _no_rows(events: Any, *, now: Any = None) -> list[Any]:
    list(events)
    return []


royalties.events.record_all = _write_nothing  # record() calls it too
# A sale on PostgreSQL writes its events' rows in its one statement.
royalties.events.event_rows = _no_rows
