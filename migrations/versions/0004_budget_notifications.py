"""The API-call budget (per-minute call buckets, destination limits) and notifications.

Revision ID: 0004_budget
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_budget"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Calls to each destination per minute, summed over the last 24 hours by every worker.
    op.create_table(
        "api_call_buckets",
        sa.Column("destination", sa.String(500), primary_key=True),
        sa.Column("minute", sa.DateTime, primary_key=True),
        sa.Column("calls", sa.Integer, nullable=False),
    )
    # The latest X-RateLimit-Limit-Day each destination answered with.
    op.create_table(
        "destination_limits",
        sa.Column("destination", sa.String(500), primary_key=True),
        sa.Column("daily_limit", sa.Integer, nullable=False),
        sa.Column("seen_at", sa.DateTime, nullable=False),
    )
    # Notification settings changed at runtime (one row); without it the TOML file applies.
    op.create_table(
        "notification_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("frequency", sa.String(20), nullable=False),
        sa.Column("webhook_url", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    # Error categories that currently have unresolved errors, per feed: a category not in here is new.
    op.create_table(
        "notification_categories",
        sa.Column("feed", sa.String(100), primary_key=True),
        sa.Column("category", sa.String(40), primary_key=True),
        sa.Column("opened_at", sa.DateTime, nullable=False),
    )
    # Every notice and digest, once (unique key), until the webhook accepted it.
    op.create_table(
        "notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("key", sa.String(300), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("claimed_until", sa.DateTime, nullable=True),
    )
    op.create_index("ix_notifications_pending", "notifications", ["sent_at", "kind"])
    # Named moments of the notification job (e.g. up to when failed runs were looked at).
    op.create_table(
        "notification_marks",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    # Per day and feed: run and error counts, kept beyond the run retention for weekly digests.
    op.create_table(
        "notification_daily_stats",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("feed", sa.String(100), primary_key=True),
        sa.Column("stats", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_daily_stats")
    op.drop_table("notification_marks")
    op.drop_index("ix_notifications_pending", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_categories")
    op.drop_table("notification_settings")
    op.drop_table("destination_limits")
    op.drop_table("api_call_buckets")
