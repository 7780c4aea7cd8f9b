"""Run owners (a run whose owner is gone is closed as `error`) and the rebuild queue (entities whose
document could not be built, retried with backoff).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))
    op.create_index("ix_sync_runs_status", "sync_runs", ["status"])
    op.create_table(
        "feed_rebuilds",
        sa.Column("feed", sa.String(100), primary_key=True),
        sa.Column("entity_key", sa.BigInteger, primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("first_failed_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_feed_rebuilds_due", "feed_rebuilds", ["feed", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_feed_rebuilds_due", "feed_rebuilds")
    op.drop_table("feed_rebuilds")
    op.drop_index("ix_sync_runs_status", "sync_runs")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("owner")
