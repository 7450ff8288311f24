"""ledger.post_many: several transactions in three statements, each checked as post
checks one, ids back in order (a batch of sales books them together)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from royalties import ledger
from royalties.errors import LedgerError
from royalties.ledger import AccountKind
from royalties.models import LedgerEntry, LedgerTransaction


def _posting(ref: str, amount: int, currency: str = "USD") -> ledger.Posting:
    return ledger.Posting(
        "purchase",
        ref,
        currency,
        (
            ledger.Line(AccountKind.STOREFRONT_RECEIVABLE, "sf_1", -amount),
            ledger.Line(AccountKind.ARTIST_EARNINGS, f"art_{ref}", amount),
        ),
    )


def test_each_id_is_the_transaction_of_the_posting_in_its_place(session):
    postings = [_posting(f"pur_{n}", 100 * n, "EUR" if n == 2 else "USD") for n in (1, 2, 3)]
    ids = ledger.post_many(session, postings)
    assert len(ids) == len(set(ids)) == 3
    for txn_id, posting in zip(ids, postings, strict=True):
        txn = session.get(LedgerTransaction, txn_id)
        assert (txn.ref, txn.currency) == (posting.ref, posting.currency)
        entries = session.execute(
            select(LedgerEntry.account_id, LedgerEntry.amount).where(
                LedgerEntry.transaction_id == txn_id
            )
        ).all()
        assert sorted(entries) == sorted(
            (ledger.account_id(line.kind, line.owner_id, posting.currency), line.amount)
            for line in posting.lines
        )
    assert ledger.check(session) == []


def test_postings_that_share_a_ref_still_get_their_own_transactions(session):
    first, second = _posting("pur_same", 100), _posting("pur_same", 300)
    ids = ledger.post_many(session, [first, second])
    amounts = [
        session.scalar(
            select(func.sum(LedgerEntry.amount)).where(
                LedgerEntry.transaction_id == txn_id, LedgerEntry.amount > 0
            )
        )
        for txn_id in ids
    ]
    assert amounts == [100, 300]


def test_one_unbalanced_posting_refuses_them_all_before_anything_is_written(session):
    good, bad = _posting("pur_good", 500), _posting("pur_bad", 500)
    bad = ledger.Posting(
        bad.kind,
        bad.ref,
        bad.currency,
        (*bad.lines, ledger.Line(AccountKind.PLATFORM_FEES, ledger.PLATFORM, 1)),
    )
    with pytest.raises(LedgerError, match="pur_bad: off by 1"):
        ledger.post_many(session, [good, bad])
    assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_no_postings_write_nothing(session):
    assert ledger.post_many(session, []) == []
    assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
