"""webhook endpoints: since when one has been failing; each endpoint's due deliveries.

- ``webhook_endpoints.failing_since``: the time of the first failed attempt after the
  endpoint's last success (null while it succeeds). The worker disables an endpoint
  whose ``failing_since`` is older than ``WEBHOOK_DISABLE_AFTER_HOURS``.
- ``ix_webhook_deliveries_endpoint_due``: ``(endpoint_id, next_attempt_at)`` of pending
  deliveries, what a worker's claim reads per endpoint.

Additive and nullable: the running version ignores it. The downgrade drops it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import royalties.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failing_since", royalties.db.UTCDateTime(), nullable=True)
        )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_endpoint_due",
            ["endpoint_id", "next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_webhook_deliveries_endpoint_due",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_column("failing_since")
