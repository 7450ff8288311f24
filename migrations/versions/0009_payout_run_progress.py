"""payout run progress: runs started from the dashboard record who asked and how far
they got.

- ``payout_runs.requested_by``: the key or sign-in link of the operator who started it
  (NULL for runs of the API and the command line, and for every earlier run).
- ``total``, ``done``, ``progress_at``: how many payouts the run settles, how many it
  has settled, when that was last written (``done`` defaults to 0; ``total`` stays NULL
  until the run knows it). A CHECK keeps ``0 <= done <= total``.
- ``not_paid``, ``balance_short``: what the run's report said it did not pay, and why
  (JSON; NULL for earlier runs).
- ``error``: why the run stopped, when it raised.
- An index on ``(started_at, id)``: the dashboard pages the runs newest first.

Additive: the running version ignores every new column, so it can be deployed with the
old version still serving. The downgrade drops them (and so what they recorded).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-19 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('payout_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('total', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('done', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('progress_at', royalties.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('not_paid', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('balance_short', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('error', sa.String(length=500), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_payout_runs_progress_bounds'), 'done >= 0 AND (total IS NULL OR done <= total)'
        )
        batch_op.create_index(
            op.f('ix_payout_runs_started_at_id'), ['started_at', 'id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('payout_runs', schema=None) as batch_op:
        batch_op.drop_index(op.f('ix_payout_runs_started_at_id'))
        batch_op.drop_constraint(op.f('ck_payout_runs_progress_bounds'), type_='check')
        for column in (
            'error',
            'balance_short',
            'not_paid',
            'progress_at',
            'done',
            'total',
            'requested_by',
        ):
            batch_op.drop_column(column)
