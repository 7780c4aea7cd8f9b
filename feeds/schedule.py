"""The scheduled jobs of SPEC §3: their names and default cron expressions."""

from __future__ import annotations

from collections.abc import Sequence

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
