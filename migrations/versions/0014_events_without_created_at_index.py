"""events: drop the index on ``created_at``.

Its only reader was a replay since a time, an operator's rare action; every event paid
for it on the purchase path (one more B-tree insert per event, a dozen per sale: about
6% of a purchase's time on SQLite, ``bench/purchases.py``). A replay now finds where
``since`` starts by a binary search over ``seq``, the primary key
(``royalties/webhooks/endpoints.py``).

The running version only reads ``created_at`` through the table, so it keeps working
while this runs. The downgrade creates the index again.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 15:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_created_at")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_created_at", ["created_at"], unique=False)
