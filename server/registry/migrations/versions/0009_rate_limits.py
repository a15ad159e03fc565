"""rate limits: attempts under a limit (sign-in, enrollment), shared by every API process

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("times", sa.JSON(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("wait", sa.Float(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_rate_limits_last"), "rate_limits", ["last"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limits_last"), table_name="rate_limits")
    op.drop_table("rate_limits")
