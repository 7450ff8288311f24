"""clear fraud signals: an admin's clearance of a signal on a fan or a link, once per
signal (UNIQUE on signal_id), with who, when and why. A new table beside
``fraud_signals``, which is left untouched: existing signals stay active, as they were.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'fraud_signal_clearances',
        sa.Column(
            'id',
            sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column('signal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('cleared_by', sa.String(length=32), nullable=False),
        sa.Column('cleared_at', royalties.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['signal_id'],
            ['fraud_signals.id'],
            name=op.f('fk_fraud_signal_clearances_signal_id_fraud_signals'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_fraud_signal_clearances')),
        sa.UniqueConstraint('signal_id', name=op.f('uq_fraud_signal_clearances_signal_id')),
    )


def downgrade() -> None:
    op.drop_table('fraud_signal_clearances')
