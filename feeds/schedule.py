"""The scheduled jobs of SPEC §3: their names and default cron expressions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from croniter import croniter

DEFAULT_CRONS: dict[str, str] = {
    "indexer_reindex_all_invalid": "* * * * *",
    "indexer_update_all_views": "* * * * *",
    "saas_data_exporter": "* * * * *",
    "sales_data_exporter": "* * * * *",
    "indexer_clean_all_changelogs": "0 * * * *",
    "sync_history_cleanup": "15 * * * *",
    "sync_error_notifications": "*/5 * * * *",
}
RESEND_CRON = "* * * * *"


def resend_job(feed: str) -> str:
    return f"{feed}_feed_resend_failed_items"


def job_names(feeds: Sequence[str]) -> list[str]:
    return [*DEFAULT_CRONS, *(resend_job(feed) for feed in feeds)]


def cron_of(job: str, configured: Mapping[str, str]) -> str:
    """The job's cron expression: its `[jobs.<name>] cron` in the TOML file, else the default."""
    return configured.get(job) or DEFAULT_CRONS.get(job, RESEND_CRON)


def next_fire(cron: str, after: datetime) -> datetime:
    """The first fire time strictly after `after` (cron expressions are read in UTC)."""
    return croniter(cron, _utc(after)).get_next(datetime)


def latest_fire(cron: str, now: datetime) -> datetime:
    """The tick `now` belongs to: the newest fire time at or before `now`."""
    return croniter(cron, _utc(now) + timedelta(microseconds=1)).get_prev(datetime)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
