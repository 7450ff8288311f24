"""payable and payout keys: whether a fan's connected account has the ``transfers``
capability active (apart from ``payouts_enabled``), how many attempts at creating the
account ended without an answer (each later one uses a new idempotency key), and on
each payout the Stripe idempotency key of its latest attempt and when it was sent. Plain ALTER TABLE
ADD COLUMN, so existing SQLite data migrates in place.

Existing fans keep being paid as before: ``transfers_active`` starts equal to
``payouts_enabled`` (the only flag known until now) and the next ``account.updated``
fetches the truth from Stripe. Existing payouts used their own id as the key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'fans',
        sa.Column('transfers_active', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute("UPDATE fans SET transfers_active = payouts_enabled")
    op.add_column(
        'fans',
        sa.Column('account_attempts', sa.Integer(), server_default='0', nullable=False),
    )
    op.add_column('payouts', sa.Column('stripe_key', sa.String(length=255), nullable=True))
    op.add_column('payouts', sa.Column('sent_at', royalties.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('payouts', 'sent_at')
    op.drop_column('payouts', 'stripe_key')
    op.drop_column('fans', 'account_attempts')
    op.drop_column('fans', 'transfers_active')
