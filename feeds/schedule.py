"""The scheduled jobs of SPEC §3: one catalog of their names, default cron expressions, groups and
kinds. Beat, the embedded runner, `cron:list`, `cron:run` and the metrics all read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from croniter import croniter

from feeds.errors import FeedsyncError


class JobGroup(StrEnum):
    """Cron groups, as Adobe Commerce names them (`cron:run --group=…`)."""

    INDEX = "index"
    RESYNC_FAILED = "resync_failed_feeds_data_exporter"
    SYNC_HISTORY = "sync_history"


class JobKind(StrEnum):
    """What a job does; worker/jobs.py maps each kind to the domain function it calls."""

    REINDEX_INVALID = "reindex_invalid"
    UPDATE_VIEWS = "update_views"
    LEGACY_EXPORT = "legacy_export"
    SALES_EXPORT = "sales_export"
    CLEAN_CHANGELOGS = "clean_changelogs"
    HISTORY_CLEANUP = "history_cleanup"
    ERROR_NOTIFICATIONS = "error_notifications"
    RESEND_FAILED = "resend_failed"


@dataclass(frozen=True)
class Job:
    """One entry of the catalog: a beat entry (and Celery task `feedsync.<name>`)."""

    name: str
    cron: str  # the default; `[jobs.<name>] cron` in the TOML file replaces it
    group: JobGroup
    kind: JobKind
    feed: str | None = None  # the feed of a resend job


RESEND_CRON = "* * * * *"

# In the order the jobs are listed and started within a minute; the resend jobs follow, per feed.
FIXED_JOBS: tuple[Job, ...] = (
    Job("indexer_reindex_all_invalid", "* * * * *", JobGroup.INDEX, JobKind.REINDEX_INVALID),
    Job("indexer_update_all_views", "* * * * *", JobGroup.INDEX, JobKind.UPDATE_VIEWS),
    Job("saas_data_exporter", "* * * * *", JobGroup.INDEX, JobKind.LEGACY_EXPORT),
    Job("sales_data_exporter", "* * * * *", JobGroup.INDEX, JobKind.SALES_EXPORT),
    Job("indexer_clean_all_changelogs", "0 * * * *", JobGroup.INDEX, JobKind.CLEAN_CHANGELOGS),
    Job("sync_history_cleanup", "15 * * * *", JobGroup.SYNC_HISTORY, JobKind.HISTORY_CLEANUP),
    Job(
        "sync_error_notifications",
        "*/5 * * * *",
        JobGroup.SYNC_HISTORY,
        JobKind.ERROR_NOTIFICATIONS,
    ),
)
DEFAULT_CRONS: dict[str, str] = {job.name: job.cron for job in FIXED_JOBS}


def resend_job(feed: str) -> str:
    return f"{feed}_feed_resend_failed_items"


def catalog(feeds: Iterable[str]) -> list[Job]:
    """Every job for these feeds, in listing order."""
    resends = (
        Job(resend_job(f), RESEND_CRON, JobGroup.RESYNC_FAILED, JobKind.RESEND_FAILED, feed=f)
        for f in feeds
    )
    return [*FIXED_JOBS, *resends]


def job_names(feeds: Sequence[str]) -> list[str]:
    return [job.name for job in catalog(feeds)]


def group_named(name: str) -> JobGroup:
    """The group of that name; FeedsyncError naming the accepted groups otherwise."""
    try:
        return JobGroup(name)
    except ValueError:
        accepted = ", ".join(group.value for group in JobGroup)
        raise FeedsyncError(f"Unknown group '{name}'; accepted groups: {accepted}.") from None


def in_group(jobs: Iterable[Job], group: JobGroup) -> list[Job]:
    return [job for job in jobs if job.group is group]


def scheduled(jobs: Iterable[Job], disabled: Iterable[JobGroup]) -> list[Job]:
    """The jobs that run on their schedule: those of the groups not disabled."""
    off = set(disabled)
    return [job for job in jobs if job.group not in off]


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
