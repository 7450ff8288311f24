"""operator audit log: who did what, to what, when.

- ``operator_actions``: one row per operator action, written in the action's own
  transaction: when, the acting key (or sign-in link session) with its role and owner,
  the action's name (``artist.created``, ``key.revoked``...), its target and a small
  JSON detail without secrets.

Additive: the running version ignores the table, so it can be deployed with the old
version still serving (the actions it performs meanwhile are not logged). The
downgrade drops the table and so the log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'operator_actions',
        sa.Column(
            'id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
            nullable=False,
        ),
        sa.Column('at', royalties.db.UTCDateTime(), nullable=False),
        sa.Column('actor_key_id', sa.String(length=32), nullable=True),
        sa.Column('actor_link_id', sa.String(length=32), nullable=True),
        sa.Column('actor_role', sa.String(length=16), nullable=False),
        sa.Column('actor_owner_id', sa.String(length=32), nullable=True),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('target_id', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "actor_role IN ('admin','artist','storefront','fan','cli')",
            name=op.f('ck_operator_actions_actor_role'),
        ),
        sa.CheckConstraint(
            "actor_key_id IS NOT NULL OR actor_link_id IS NOT NULL OR actor_role = 'cli'",
            name=op.f('ck_operator_actions_actor_named'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_actions')),
    )
    with op.batch_alter_table('operator_actions', schema=None) as batch_op:
        batch_op.create_index('ix_operator_actions_at', ['at', 'id'], unique=False)
        batch_op.create_index('ix_operator_actions_action', ['action', 'at'], unique=False)
        batch_op.create_index('ix_operator_actions_actor', ['actor_key_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_table('operator_actions')
