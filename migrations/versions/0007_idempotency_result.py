"""idempotency result: a key's record keeps the response body only; which HTTP status a
replay answers is the API's business (``api/run_once.py``), not a column of the domain.

Deploy with the old version stopped, as for 0005: it still reads the dropped column.
The downgrade brings the column back filled with 201, the status every recorded
response had (idempotency keys are taken by create-style endpoints only).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column('idempotency_records', 'response_status')


def downgrade() -> None:
    op.add_column('idempotency_records', sa.Column('response_status', sa.Integer(), nullable=True))
    op.execute("UPDATE idempotency_records SET response_status = 201 WHERE state = 'done'")
