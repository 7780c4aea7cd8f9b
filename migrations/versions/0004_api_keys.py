"""API keys, per-key rate-limit counters, and the API's shared secrets.

Revision ID: 0004_api
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_api"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        # Only a digest of the key is kept; the prefix lets people tell keys apart in listings.
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("permissions", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_used_at", sa.DateTime, nullable=True),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
    )
    # Fixed one-minute windows per key and endpoint group, shared by every API process.
    op.create_table(
        "api_rate_limits",
        sa.Column("key_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("scope", sa.String(40), primary_key=True),
        sa.Column("window_start", sa.DateTime, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    # Secrets every API process must share (e.g. the cursor-signing key), created on first use.
    op.create_table(
        "api_secrets",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_secrets")
    op.drop_table("api_rate_limits")
    op.drop_table("api_keys")
