"""account kinds: ``ledger_accounts.kind`` must be one of the kinds the engine posts to
(``royalties.models.ledger.AccountKind``), so a typo cannot open a new, balanced account
that no balance ever reads.

PostgreSQL adds the CHECK in place. SQLite cannot add a constraint to a table, so the
batch operation rebuilds ``ledger_accounts`` (copy, drop, rename; its rows, unique
constraint and index come back as they were). ``ledger_entries`` keeps its foreign key
to it, and nothing of its own is touched: its rows, its append-only triggers. The
environment turns SQLite's foreign-key enforcement off for the rebuild and checks every
foreign key before the commit (``migrations/env.py``).

An account of another kind stops the upgrade with its kinds named, before any change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The kinds as of this revision (a later kind is a later migration of this CHECK).
KINDS = (
    'storefront_receivable',
    'artist_earnings',
    'platform_fees',
    'fan_pending',
    'fan_available',
    'fan_paid',
    'payout_clearing',
)
KIND_IN = "kind IN (" + ",".join(f"'{kind}'" for kind in KINDS) + ")"


def upgrade() -> None:
    unknown = (
        op.get_bind()
        .execute(sa.text(f"SELECT DISTINCT kind FROM ledger_accounts WHERE NOT ({KIND_IN})"))
        .scalars()
        .all()
    )
    if unknown:
        raise RuntimeError(
            f"ledger accounts of unknown kinds {sorted(unknown)}: correct them before 0005"
        )
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_ledger_accounts_kind'), KIND_IN)


def downgrade() -> None:
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_ledger_accounts_kind'), type_='check')
