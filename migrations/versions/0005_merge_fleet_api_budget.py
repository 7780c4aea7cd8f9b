"""Merge the three branches that landed side by side (API keys, budget and notifications, job runs).

Revision ID: 0005
Revises: 0004_api, 0004_budget, 0004_jobs
Create Date: 2026-11-23
"""

revision = "0005"
down_revision = ("0004_api", "0004_budget", "0004_jobs")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
