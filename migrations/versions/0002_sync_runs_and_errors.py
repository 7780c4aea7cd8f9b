"""Sync runs and sync errors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("feed", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(30), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("new", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_synced", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_failed_with_errors", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_timestamp_synced", sa.DateTime, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
    )
    op.create_index("ix_sync_runs_started", "sync_runs", ["started_at"])
    op.create_index("ix_sync_runs_feed", "sync_runs", ["feed", "started_at"])
    op.create_table(
        "sync_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("feed", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("code", sa.String(100), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("first_seen", sa.DateTime, nullable=False),
        sa.Column("last_seen", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_sync_errors_item", "sync_errors", ["feed", "item_id"])
    op.create_index("ix_sync_errors_category", "sync_errors", ["resolved", "category"])


def downgrade() -> None:
    op.drop_table("sync_errors")
    op.drop_table("sync_runs")
