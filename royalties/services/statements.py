"""A fan's statement: every movement of its money, explained, and balances that add up.

Read straight from the ledger: each entry on the fan's ``pending``, ``available`` and
``paid`` accounts, grouped per ledger transaction and reward, becomes one line with
its signed change to each of the three balances. So every cent is explained (reward
credits, refund reversals, maturing moves, payouts and their failures or reversals,
review rejections) and the totals are, by construction, what
``royalties.ledger.fan_balances`` reports.

- ``amount`` is a line's change to pending + available + paid. A payout line takes the
  money out of ``available`` into the payout clearing account (the fan's total drops
  while Stripe is at work); ``payout_paid`` brings it back into ``paid``.
- ``state`` is the current state of what the line is about: the reward's (pending,
  available, reversed, held, rejected) or the payout's (pending, submitted, paid,
  failed).
- Lines are the transactions dated in [start, end); ``opening`` and ``closing`` are the
  balances before ``start`` and before ``end``; ``totals`` are the balances over the
  whole history, equal to the balance endpoint's figures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import rewards
from royalties.db import utcnow
from royalties.errors import ValidationFailed
from royalties.ledger import FAN_KINDS, AccountKind
from royalties.models import (
    Content,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    Purchase,
    Reward,
)
from royalties.rewards import mature_due
from royalties.services._tx import unit_of_work
from royalties.services.fans import get_fan

#: Ledger transaction kinds as a statement names them; others keep their own name.
LINE_KINDS = {
    "purchase": "reward",
    "refund": "reversal",
    "mature": "matured",
    "review_rejected": "rejected",
    "payout": "payout",
    "payout_paid": "payout_paid",
    "payout_failed": "payout_failed",
    "payout_reversed": "payout_reversed",
}
_BUCKETS: dict[str, str] = {  # an account kind, as the database gives it back
    AccountKind.FAN_PENDING: "pending",
    AccountKind.FAN_AVAILABLE: "available",
    AccountKind.FAN_PAID: "paid",
}
_PAYOUT_KINDS = ("payout", "payout_paid", "payout_failed", "payout_reversed")
_BATCH = 2000

CSV_COLUMNS = (
    "date",
    "kind",
    "currency",
    "amount",
    "pending",
    "available",
    "paid",
    "purchase_id",
    "content_id",
    "content_title",
    "level",
    "state",
    "reward_id",
    "payout_id",
)


def fan_statement(
    session: Session,
    fan_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The fan's statement for [start, end) (see the module docstring). Matures due
    rewards first, as reading a balance does, so both show the same figures. Commits.
    Raises NotFound for an unknown fan, ValidationFailed when start is after end."""
    start = _utc(start)
    end = _utc(end)
    if start is not None and end is not None and start > end:
        raise ValidationFailed("from is after to", fields={"to": ["must not be before from"]})
    fan = get_fan(session, fan_id)
    handle = fan.handle
    with unit_of_work(session):
        mature_due(session, now=now or utcnow(), fan_id=fan_id)

    entries = session.execute(
        select(
            LedgerTransaction.id,
            LedgerTransaction.kind,
            LedgerTransaction.ref,
            LedgerTransaction.created_at,
            LedgerAccount.kind,
            LedgerEntry.currency,
            LedgerEntry.amount,
            LedgerEntry.reward_id,
        )
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerAccount.owner_id == fan_id, LedgerAccount.kind.in_(FAN_KINDS))
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id, LedgerEntry.id)
    ).all()

    totals: dict[str, dict[str, int]] = {}
    opening: dict[str, dict[str, int]] = {}
    closing: dict[str, dict[str, int]] = {}
    lines: dict[tuple[int, str | None], dict[str, Any]] = {}
    for txn_id, kind, ref, at, account, currency, amount, reward_id in entries:
        bucket = _BUCKETS[account]
        _add(totals, currency, bucket, amount)
        if start is not None and at < start:
            _add(opening, currency, bucket, amount)
        if end is None or at < end:
            _add(closing, currency, bucket, amount)
        if (start is not None and at < start) or (end is not None and at >= end):
            continue
        line = lines.get((txn_id, reward_id))
        if line is None:
            line = lines[(txn_id, reward_id)] = {
                "date": at.isoformat(),
                "kind": LINE_KINDS.get(kind, kind),
                "currency": currency,
                "amount": 0,
                "pending": 0,
                "available": 0,
                "paid": 0,
                "purchase_id": None,
                "content_id": None,
                "content_title": None,
                "level": None,
                "state": None,
                "reward_id": reward_id,
                "payout_id": ref if kind in _PAYOUT_KINDS else None,
                "transaction_id": txn_id,
            }
        line[bucket] += amount
        line["amount"] += amount
    _explain(session, list(lines.values()))
    session.rollback()
    currencies = sorted(totals)
    return {
        "fan_id": fan_id,
        "handle": handle,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "lines": list(lines.values()),
        "opening": _balances(opening, currencies),
        "closing": _balances(closing, currencies),
        "totals": _balances(totals, currencies),
    }


def statement_csv(statement: dict[str, Any]) -> str:
    """The statement as CSV: a header, one row per line, then per currency the opening,
    closing and total balances (rows of kind ``opening``, ``closing``, ``total``)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for line in statement["lines"]:
        writer.writerow([_cell(line.get(column)) for column in CSV_COLUMNS])
    summaries = (
        ("opening", "opening", statement["from"]),
        ("closing", "closing", statement["to"]),
        ("total", "totals", None),
    )
    for kind, key, dated in summaries:
        for balance in statement[key]:
            row = dict(balance, kind=kind, date=dated)
            row["amount"] = balance["pending"] + balance["available"] + balance["paid"]
            writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _add(into: dict[str, dict[str, int]], currency: str, bucket: str, amount: int) -> None:
    into.setdefault(currency, {"pending": 0, "available": 0, "paid": 0})[bucket] += amount


def _balances(by_currency: dict[str, dict[str, int]], currencies: list[str]) -> list[Any]:
    empty = {"pending": 0, "available": 0, "paid": 0}
    return [{"currency": c, **by_currency.get(c, empty)} for c in currencies]


def _batches(ids: Iterable[str]) -> Iterator[list[str]]:
    it = iter(sorted(ids))
    while batch := list(islice(it, _BATCH)):
        yield batch


def _explain(session: Session, lines: list[dict[str, Any]]) -> None:
    """Fill in each line's purchase, content, level and state."""
    reward_ids = {line["reward_id"] for line in lines if line["reward_id"]}
    found: dict[str, tuple[Reward, str, str]] = {}
    for batch in _batches(reward_ids):
        for reward, content_id, title in session.execute(
            select(Reward, Purchase.content_id, Content.title)
            .join(Purchase, Purchase.id == Reward.purchase_id)
            .join(Content, Content.id == Purchase.content_id)
            .where(Reward.id.in_(batch))
        ):
            found[reward.id] = (reward, content_id, title)
    payout_ids = {line["payout_id"] for line in lines if line["payout_id"]}
    states: dict[str, str] = {}
    for batch in _batches(payout_ids):
        query = select(Payout.id, Payout.state).where(Payout.id.in_(batch))
        states.update((payout_id, state) for payout_id, state in session.execute(query))
    for line in lines:
        if line["reward_id"] in found:
            reward, content_id, title = found[line["reward_id"]]
            line.update(
                purchase_id=reward.purchase_id,
                content_id=content_id,
                content_title=title,
                level=reward.level,
                state=rewards.shown_state(reward),
            )
        elif line["payout_id"] in states:
            line["state"] = states[line["payout_id"]]
