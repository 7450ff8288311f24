"""Posting to the ledger, reading balances, and checking the invariants.

Design (see ``royalties.models.ledger`` for the tables):

- ``post()`` (or ``post_many()`` for several transactions at once) is the only way
  money moves. It refuses, before anything is flushed, a
  transaction that is empty, unbalanced, holds a non-integer amount or names an account
  kind that is not an ``AccountKind`` (the database's CHECK refuses it too); zero lines
  are dropped. Accounts are created on first use (deterministic ids, insert-or-ignore), so
  a post is three statements whatever the number of lines; or, for a sale on
  PostgreSQL, three parts of the sale's one statement (``posting_ctes``).
- Balances are always derived: the sum of an account's entries. Nothing is cached, so
  there is no cached figure that could drift and no hot row that concurrent purchases
  would fight over.
- ``check()`` verifies, over the whole ledger, that every transaction and every
  currency sums to zero; the test suite runs it after every scenario.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ScalarSelect, and_, func, insert, select
from sqlalchemy.orm import Session

from royalties.db import (
    insert_rows,
    insert_rows_returning,
    json_records,
    json_rows,
    json_rows_insert,
    table,
    utcnow,
)
from royalties.errors import LedgerError
from royalties.models import LedgerAccount, LedgerEntry, LedgerTransaction
from royalties.models.ledger import AccountKind as AccountKind  # its home is the model's

PLATFORM = "platform"
#: A fan's three accounts per currency.
FAN_KINDS = (AccountKind.FAN_PENDING, AccountKind.FAN_AVAILABLE, AccountKind.FAN_PAID)
_KINDS = frozenset(AccountKind)
_KINDS_LISTED = tuple(AccountKind)


def account_id(kind: AccountKind, owner_id: str, currency: str) -> str:
    return f"{kind}:{owner_id}:{currency}"


@dataclass(frozen=True)
class Line:
    """One entry to post: ``amount`` (signed minor units) to the account ``kind:owner``."""

    kind: AccountKind
    owner_id: str
    amount: int
    reward_id: str | None = None


@dataclass(frozen=True)
class Posting:
    """One balanced, single-currency transaction to post."""

    kind: str
    ref: str
    currency: str
    lines: tuple[Line, ...]
    memo: str = ""


# Ids back in the order of the rows given, however the database batches the insert.
_INSERT_TRANSACTIONS = insert(table(LedgerTransaction)).returning(
    LedgerTransaction.id, sort_by_parameter_order=True
)


def post(
    session: Session, *, kind: str, ref: str, currency: str, lines: Iterable[Line], memo: str = ""
) -> int:
    """Post one balanced, single-currency transaction; returns its id. Does not commit."""
    return post_many(session, [Posting(kind, ref, currency, tuple(lines), memo)])[0]


@dataclass(frozen=True)
class Prepared:
    """Postings checked and turned into rows: the accounts they use (sorted by id, so
    concurrent posts create shared accounts in one order: no deadlock), one transaction
    per posting, and each posting's entries (without their transaction's id)."""

    accounts: list[dict[str, object]]
    transactions: list[dict[str, object]]
    entries: list[list[dict[str, object]]]

    @property
    def named_apart(self) -> bool:
        """True when no two postings share a (kind, ref)."""
        named = {(t["kind"], t["ref"]) for t in self.transactions}
        return len(named) == len(self.transactions)


def prepare(postings: Sequence[Posting]) -> Prepared:
    """The rows of these postings, each checked as ``post`` checks one; LedgerError, and
    nothing to write, when any of them must not be posted."""
    checked = [(posting, _checked_lines(posting)) for posting in postings]
    accounts: dict[str, dict[str, object]] = {
        account_id(line.kind, line.owner_id, posting.currency): {
            "id": account_id(line.kind, line.owner_id, posting.currency),
            "kind": line.kind,
            "owner_id": line.owner_id,
            "currency": posting.currency,
        }
        for posting, lines in checked
        for line in lines
    }
    now = utcnow()
    return Prepared(
        [accounts[key] for key in sorted(accounts)],
        [
            {
                "kind": posting.kind,
                "ref": posting.ref,
                "currency": posting.currency,
                "memo": posting.memo[:200],
                "created_at": now,
            }
            for posting, _lines in checked
        ],
        [
            [
                {
                    "account_id": account_id(line.kind, line.owner_id, posting.currency),
                    "currency": posting.currency,
                    "amount": line.amount,
                    "reward_id": line.reward_id,
                }
                for line in lines
            ]
            for posting, lines in checked
        ],
    )


def post_many(session: Session, postings: Sequence[Posting]) -> list[int]:
    """Post these transactions, each checked as ``post`` checks one, in three statements
    whatever their number (a batch of sales posts in one go); returns their ids, in
    order. Nothing is written unless every one of them is sound. Does not commit."""
    prepared = prepare(postings)
    if not prepared.transactions:
        return []
    # Core statements on the session's connection: this is on every sale's hot path, and
    # the ORM's bulk machinery costs more than the SQL. Pending ORM objects go first
    # (entries may reference a reward the caller just added).
    session.flush()
    conn = session.connection()
    insert_rows(conn, table(LedgerAccount), prepared.accounts, or_ignore=True)
    transactions = prepared.transactions
    txn_ids: list[int]
    if conn.dialect.name == "postgresql" and prepared.named_apart and len(transactions) > 1:
        # Many at once: one statement, ids matched back by (kind, ref). SQLAlchemy's own
        # ordered RETURNING sends a statement of five parameters per row that psycopg
        # parses anew every time (a sixth of a 500-sale batch's time).
        ids = {
            (kind, ref): txn_id
            for txn_id, kind, ref in insert_rows_returning(
                conn, table(LedgerTransaction), transactions, "id", "kind", "ref"
            )
        }
        txn_ids = [ids[t["kind"], t["ref"]] for t in transactions]
    elif len(transactions) == 1:  # a single sale: a plain INSERT .. RETURNING
        txn_ids = [conn.execute(_INSERT_TRANSACTIONS, transactions[0]).scalar_one()]
    else:
        txn_ids = list(conn.execute(_INSERT_TRANSACTIONS, transactions).scalars())
    insert_rows(
        conn,
        table(LedgerEntry),
        [
            {"transaction_id": txn_id, **entry}
            for txn_id, entries in zip(txn_ids, prepared.entries, strict=True)
            for entry in entries
        ],
    )
    return txn_ids


def posting_params(prepared: Prepared) -> dict[str, Any]:
    """The parameters of ``posting_ctes`` for these postings."""
    return {
        "ledger_accounts": json_rows(table(LedgerAccount), prepared.accounts),
        "ledger_transactions": json_rows(table(LedgerTransaction), prepared.transactions),
        "ledger_entries": [
            {"kind": t["kind"], "ref": t["ref"], **entry}
            for t, entries in zip(prepared.transactions, prepared.entries, strict=True)
            for entry in entries
        ],
    }


@cache
def posting_ctes() -> tuple[Any, ...]:
    """Postings as parts (CTEs) of one PostgreSQL statement with other writes, their
    parameters from ``posting_params``: accounts (insert-or-ignore), transactions, and
    entries that take their transaction's id from the transactions part by (kind, ref),
    which must name each posting apart (``Prepared.named_apart``). The balance trigger is
    deferred to the commit and foreign keys are checked at the end of the statement, so
    the one statement is as sound as ``post_many``'s three."""
    accounts = json_rows_insert(
        table(LedgerAccount), _ACCOUNT_COLUMNS, or_ignore=True, param="ledger_accounts"
    ).cte("ledger_accounts_written")
    transactions = (
        json_rows_insert(
            table(LedgerTransaction), _TRANSACTION_COLUMNS, param="ledger_transactions"
        )
        .returning(LedgerTransaction.id, LedgerTransaction.kind, LedgerTransaction.ref)
        .cte("ledger_transactions_written")
    )
    entry = table(LedgerEntry)
    lines = json_records(
        "ledger_entries",
        [
            ("kind", LedgerTransaction.kind.type),
            ("ref", LedgerTransaction.ref.type),
            *((name, entry.c[name].type) for name in _ENTRY_COLUMNS),
        ],
        "r_ledger_entries",
    )
    source = select(transactions.c.id, *(lines.c[name] for name in _ENTRY_COLUMNS)).join_from(
        lines,
        transactions,
        and_(transactions.c.kind == lines.c.kind, transactions.c.ref == lines.c.ref),
    )
    entries = (
        insert(entry)
        .from_select(["transaction_id", *_ENTRY_COLUMNS], source)
        .cte("ledger_entries_written")
    )
    return accounts, transactions, entries


_ACCOUNT_COLUMNS = ("id", "kind", "owner_id", "currency")
_TRANSACTION_COLUMNS = ("kind", "ref", "currency", "memo", "created_at")
_ENTRY_COLUMNS = ("account_id", "currency", "amount", "reward_id")


def _checked_lines(posting: Posting) -> list[Line]:
    """The posting's non-zero lines, or LedgerError when it must not be posted."""
    kind, ref = posting.kind, posting.ref
    for line in posting.lines:  # zero lines too: a typo must not wait for a non-zero amount
        if line.kind not in _KINDS:
            raise LedgerError(
                f"unknown ledger account kind {line.kind!r} in {kind}/{ref}; "
                f"the kinds are {', '.join(_KINDS_LISTED)}"
            )
    lines = [line for line in posting.lines if line.amount != 0]
    for line in lines:
        if isinstance(line.amount, bool) or not isinstance(line.amount, int):
            raise LedgerError(f"ledger amounts are integers, got {line.amount!r}")
    if not lines:
        raise LedgerError("a ledger transaction needs at least two non-zero entries")
    total = sum(line.amount for line in lines)
    if total != 0:
        raise LedgerError(f"unbalanced ledger transaction {kind}/{ref}: off by {total}")
    return lines


@dataclass(frozen=True)
class FanBalance:
    currency: str
    pending: int
    available: int
    paid: int


def fan_balances(session: Session, fan_id: str) -> list[FanBalance]:
    """Pending, available and paid per currency, each the sum of its entries."""
    rows = session.execute(
        select(
            LedgerAccount.currency,
            LedgerAccount.kind,
            func.coalesce(func.sum(LedgerEntry.amount), 0),
        )
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.owner_id == fan_id, LedgerAccount.kind.in_(FAN_KINDS))
        .group_by(LedgerAccount.currency, LedgerAccount.kind)
    ).all()
    by_currency: dict[str, dict[str, int]] = {}
    for currency, kind, total in rows:
        by_currency.setdefault(currency, dict.fromkeys(FAN_KINDS, 0))[kind] = int(total)
    return [
        FanBalance(
            c, v[AccountKind.FAN_PENDING], v[AccountKind.FAN_AVAILABLE], v[AccountKind.FAN_PAID]
        )
        for c, v in sorted(by_currency.items())
    ]


def balance(session: Session, kind: AccountKind, owner_id: str, currency: str) -> int:
    total = session.scalar(select(balance_of(account_id(kind, owner_id, currency))))
    return int(total or 0)


def balance_of(account: Any) -> ScalarSelect[Any]:
    """An account's balance, the sum of its entries, as a subquery (``account`` may be a
    bind parameter): for statements that read it with other things in one round trip."""
    return (
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.account_id == account)
        .scalar_subquery()
    )


def check(session: Session) -> list[str]:
    """Every way the ledger could be wrong, as sentences; empty when it is sound."""
    problems = []
    for txn_id, total in session.execute(
        select(LedgerEntry.transaction_id, func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount) != 0)
    ):
        problems.append(f"transaction {txn_id} is unbalanced by {total}")
    for currency, total in session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .group_by(LedgerEntry.currency)
        .having(func.sum(LedgerEntry.amount) != 0)
    ):
        problems.append(f"currency {currency} sums to {total}, not zero")
    lonely = session.scalars(
        select(LedgerTransaction.id).where(
            ~select(LedgerEntry.id)
            .where(LedgerEntry.transaction_id == LedgerTransaction.id)
            .exists()
        )
    ).all()
    problems += [f"transaction {t} has no entries" for t in lonely]
    return problems
