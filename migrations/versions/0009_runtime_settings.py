"""Runtime settings: values changed from the dashboard or the API for the whole fleet (the daily
API-call allocation), the environment's value being only their default; and the field and value
a destination names in a rejection (sync_errors.field, sync_errors.value).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runtime_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=True),
    )
    with op.batch_alter_table("sync_errors") as batch:
        batch.add_column(sa.Column("field", sa.String(200), nullable=True))
        batch.add_column(sa.Column("value", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_errors") as batch:
        batch.drop_column("value")
        batch.drop_column("field")
    op.drop_table("runtime_settings")
