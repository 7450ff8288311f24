"""sign-in links: people sign in to the dashboard by email.

- ``sign_in_links``: a single-use link's SHA-256 (never the token), the address it was
  sent to, the role and owner it signs in as, when it expires, when it was used and
  when the session it opened ended (sign-out).
- ``artists.email``: where an artist's links go (fans already have ``fans.email``;
  admins are named by ``ADMIN_EMAILS``). Nullable: existing artists have none until an
  admin sets one; UNIQUE, so an address names at most one artist.

Additive: the running version ignores both, so it can be deployed with the old version
still serving. The downgrade drops both (and so every link and email-opened session).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sign_in_links',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('owner_id', sa.String(length=32), nullable=True),
        sa.Column('created_at', royalties.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', royalties.db.UTCDateTime(), nullable=False),
        sa.Column('used_at', royalties.db.UTCDateTime(), nullable=True),
        sa.Column('ended_at', royalties.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint("role IN ('admin','artist','fan')", name=op.f('ck_sign_in_links_role')),
        sa.CheckConstraint(
            'expires_at > created_at', name=op.f('ck_sign_in_links_expires_after_creation')
        ),
        sa.CheckConstraint(
            'used_at IS NULL OR used_at < expires_at',
            name=op.f('ck_sign_in_links_used_before_expiry'),
        ),
        sa.CheckConstraint(
            'ended_at IS NULL OR used_at IS NOT NULL', name=op.f('ck_sign_in_links_ended_after_use')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_links')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_sign_in_links_token_hash')),
    )
    with op.batch_alter_table('artists', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=320), nullable=True))
        batch_op.create_unique_constraint(op.f('uq_artists_email'), ['email'])


def downgrade() -> None:
    with op.batch_alter_table('artists', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_artists_email'), type_='unique')
        batch_op.drop_column('email')
    op.drop_table('sign_in_links')
