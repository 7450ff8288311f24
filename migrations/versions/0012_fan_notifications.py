"""fan notifications and the worker's schedule.

- ``fans.notify_email``: whether the fan gets emails about rewards and payouts; true
  for every fan, old and new, until the fan switches it off.
- ``fan_notices``: the fan mail queue, one row per event a fan is told about, with when
  it is due, a sender's lease, when it was sent (or why it was dropped).
- ``worker_schedule``: each periodic job's next due time, claimed by one worker.

Additive: the running version ignores the new column (it has a server default) and the
new tables. The downgrade drops them, and with them every unsent notification.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-14 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notify_email", sa.Boolean(), server_default=sa.true(), nullable=False)
        )

    op.create_table(
        "fan_notices",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("fan_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", royalties.db.UTCDateTime(), nullable=False),
        sa.Column("due_at", royalties.db.UTCDateTime(), nullable=False),
        sa.Column("claimed_until", royalties.db.UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_at", royalties.db.UTCDateTime(), nullable=True),
        sa.Column("dropped", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "kind IN ('reward.created','reward.available','payout.paid')",
            name=op.f("ck_fan_notices_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["fan_id"], ["fans.id"], name=op.f("fk_fan_notices_fan_id_fans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fan_notices")),
        sa.UniqueConstraint("event_id", name=op.f("uq_fan_notices_event_id")),
    )
    with op.batch_alter_table("fan_notices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fan_notices_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("sent_at IS NULL AND dropped IS NULL"),
            sqlite_where=sa.text("sent_at IS NULL AND dropped IS NULL"),
        )
        batch_op.create_index("ix_fan_notices_fan_kind", ["fan_id", "kind"], unique=False)

    op.create_table(
        "worker_schedule",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("schedule", sa.String(length=128), nullable=False),
        sa.Column("next_due_at", royalties.db.UTCDateTime(), nullable=False),
        sa.Column("last_run_at", royalties.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_worker_schedule")),
    )


def downgrade() -> None:
    op.drop_table("worker_schedule")
    with op.batch_alter_table("fan_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_fan_notices_fan_kind")
        batch_op.drop_index(
            "ix_fan_notices_due",
            postgresql_where=sa.text("sent_at IS NULL AND dropped IS NULL"),
            sqlite_where=sa.text("sent_at IS NULL AND dropped IS NULL"),
        )

    op.drop_table("fan_notices")
    with op.batch_alter_table("fans", schema=None) as batch_op:
        batch_op.drop_column("notify_email")
