"""Scheduled job runs (for `cron:list` and the fleet's once-per-tick checks) and fan-out resync ranges.

Revision ID: 0004_jobs
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_jobs"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job", sa.String(200), nullable=False),
        # The cron fire time this run answers (beat ticks); NULL for `cron:run` and embedded runs.
        sa.Column("tick", sa.DateTime, nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
    )
    op.create_index("ix_job_runs_job", "job_runs", ["job", "started_at"])
    op.create_index("ix_job_runs_task", "job_runs", ["task_id"])
    # The key ranges of a fan-out resync (`saas:resync --fleet`), so a continued one sends only
    # the ranges not done yet.
    op.create_table(
        "resync_ranges",
        sa.Column("feed", sa.String(100), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("lo", sa.BigInteger, nullable=True),
        sa.Column("hi", sa.BigInteger, nullable=True),
        sa.Column("entities", sa.Integer, nullable=False),
        sa.Column("done_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("resync_ranges")
    op.drop_index("ix_job_runs_task", "job_runs")
    op.drop_index("ix_job_runs_job", "job_runs")
    op.drop_table("job_runs")
