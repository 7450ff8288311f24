"""The append-only double-entry ledger.

- An account is identified by ``kind:owner:currency`` (deterministic ids: no lookup on
  the hot path, just ``INSERT .. ON CONFLICT DO NOTHING``).
- A transaction is single-currency; each entry repeats the currency and composite
  foreign keys tie it to both its transaction's and its account's currency, so a
  mixed-currency transaction cannot be stored.
- Entries are non-zero and signed. Positive means the holder is owed more (fans,
  artists, fees); the storefront receivable goes negative by what storefronts owe.
  Every transaction sums to zero, hence so does every currency.
- Enforced twice: in Python before flush (``royalties.ledger``), and in the database:
  CHECKs and foreign keys everywhere; triggers that refuse UPDATE and DELETE of entries
  and transactions (both dialects); on PostgreSQL a deferred constraint trigger that
  refuses to commit a transaction whose entries do not sum to zero.
- An account's kind is one of ``AccountKind``: ``ledger.post`` refuses any other, and so
  does a CHECK on ``ledger_accounts.kind`` (a typo would otherwise open a new, balanced
  account that no balance ever reads).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow


class AccountKind(StrEnum):
    """What a ledger account holds; the value is stored in ``ledger_accounts.kind`` and
    is the first part of the account's id. Adding one needs a migration of the CHECK."""

    STOREFRONT_RECEIVABLE = "storefront_receivable"  # negative: what a storefront owes
    ARTIST_EARNINGS = "artist_earnings"
    PLATFORM_FEES = "platform_fees"
    FAN_PENDING = "fan_pending"  # rewards still in their hold period (or held for review)
    FAN_AVAILABLE = "fan_available"  # rewards a payout may take
    FAN_PAID = "fan_paid"
    PAYOUT_CLEARING = "payout_clearing"  # claimed by a payout, not yet settled at Stripe


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("id", "currency"),
        CheckConstraint("kind IN (" + ",".join(f"'{kind}'" for kind in AccountKind) + ")", "kind"),
        Index("ix_ledger_accounts_owner", "owner_id", "kind", "currency"),
    )

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[str] = mapped_column(String(48))
    currency: Mapped[str] = mapped_column(String(3))


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("id", "currency"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    memo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", "amount_nonzero"),
        ForeignKeyConstraint(
            ["transaction_id", "currency"],
            ["ledger_transactions.id", "ledger_transactions.currency"],
            name="fk_ledger_entries_transaction_currency",
        ),
        ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name="fk_ledger_entries_account_currency",
        ),
        Index("ix_ledger_entries_account_id", "account_id"),
        Index("ix_ledger_entries_transaction_id", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[str] = mapped_column(String(96))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The reward this entry concerns, when it does: lets a fan see every cent's origin.
    reward_id: Mapped[str | None] = mapped_column(ForeignKey("rewards.id"), index=True)
