"""Destination pauses: "paused until" per destination after a 429, shared by every sender.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destination_pauses",
        sa.Column("destination", sa.String(500), primary_key=True),
        sa.Column("paused_until", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("destination_pauses")
