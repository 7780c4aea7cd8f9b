"""Indexer state, the feed table and locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "indexer_state",
        sa.Column("indexer_id", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("version_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("mode_updated_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "feed_items",
        sa.Column("feed", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("entity_key", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(32), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("modified_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("sent_hash", sa.String(32), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime, nullable=True),
        sa.Column("error_code", sa.String(100), nullable=True),
        sa.Column("error_category", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_feed_items_entity", "feed_items", ["feed", "entity_key"])
    op.create_index("ix_feed_items_status", "feed_items", ["feed", "status"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_index("ix_feed_items_status", "feed_items")
    op.drop_index("ix_feed_items_entity", "feed_items")
    op.drop_table("feed_items")
    op.drop_table("indexer_state")
