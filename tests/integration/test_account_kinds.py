"""Ledger account kinds are one enum, refused otherwise by ``ledger.post`` and by the
database (a typo would open a new, balanced account that no balance ever reads)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from royalties import ledger
from royalties.errors import LedgerError
from royalties.ledger import AccountKind
from royalties.models import LedgerAccount, LedgerEntry


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_post_refuses_an_account_kind_that_is_not_one_and_names_it(session):
    lines = [
        ledger.Line(AccountKind.ARTIST_EARNINGS, "art_1", 5),
        ledger.Line("fan_availabel", "fan_1", -5),
    ]
    with pytest.raises(LedgerError, match=r"unknown ledger account kind 'fan_availabel'"):
        ledger.post(session, kind="purchase", ref="pur_1", currency="USD", lines=lines)
    assert count(session, LedgerAccount) == count(session, LedgerEntry) == 0


def test_post_refuses_an_unknown_kind_even_on_a_line_of_zero(session):
    lines = [
        ledger.Line(AccountKind.ARTIST_EARNINGS, "art_1", 5),
        ledger.Line(AccountKind.PLATFORM_FEES, ledger.PLATFORM, -5),
        ledger.Line("fees", ledger.PLATFORM, 0),
    ]
    with pytest.raises(LedgerError, match="'fees'"):
        ledger.post(session, kind="purchase", ref="pur_1", currency="USD", lines=lines)


def test_kinds_are_stored_and_named_by_their_plain_values(session):
    assert ledger.account_id(AccountKind.FAN_PAID, "fan_1", "USD") == "fan_paid:fan_1:USD"
    ledger.post(
        session,
        kind="purchase",
        ref="pur_1",
        currency="USD",
        lines=[
            ledger.Line(AccountKind.STOREFRONT_RECEIVABLE, "sf_1", -5),
            ledger.Line("fan_pending", "fan_1", 5),  # a kind's value is that kind
        ],
    )
    session.commit()
    stored = session.execute(text("SELECT id, kind FROM ledger_accounts ORDER BY id")).all()
    assert [tuple(row) for row in stored] == [
        ("fan_pending:fan_1:USD", "fan_pending"),
        ("storefront_receivable:sf_1:USD", "storefront_receivable"),
    ]
    assert ledger.balance(session, AccountKind.FAN_PENDING, "fan_1", "USD") == 5


def test_the_database_refuses_an_account_of_an_unknown_kind(session):
    with pytest.raises(IntegrityError, match=r"(?i)check"):
        session.execute(
            text(
                "INSERT INTO ledger_accounts (id, kind, owner_id, currency) "
                "VALUES ('fan_availabel:f:USD', 'fan_availabel', 'f', 'USD')"
            )
        )
    session.rollback()
    assert count(session, LedgerAccount) == 0


def test_the_database_accepts_every_kind_of_the_enum(session):
    """The migration's CHECK lists the kinds as of its revision: a kind added to the enum
    without a migration fails here (``alembic check`` does not compare CHECKs)."""
    for kind in AccountKind:
        session.execute(
            text(
                "INSERT INTO ledger_accounts (id, kind, owner_id, currency) "
                "VALUES (:id, :kind, 'x', 'USD')"
            ),
            {"id": ledger.account_id(kind, "x", "USD"), "kind": kind.value},
        )
    session.commit()
    assert count(session, LedgerAccount) == len(AccountKind)
