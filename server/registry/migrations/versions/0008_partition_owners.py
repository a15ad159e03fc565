"""partition owners: the fencing epoch (NATS pin id) of each partition of the scale-out's stream

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partition_owners",
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pin", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("partition"),
    )


def downgrade() -> None:
    op.drop_table("partition_owners")
