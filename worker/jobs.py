"""The cron jobs of SPEC §3: thin calls into the domain, each returning a summary line per feed."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime

import structlog

from feeds.context import Context
from feeds.definitions import FeedRegistry
from feeds.errors import FeedsyncError
from feeds.history import job_runs, runs
from feeds.notify import webhook as notifications
from feeds.pipeline import exporter, indexer
from feeds.pipeline.run import Outcome
from feeds.schedule import Job as CatalogJob
from feeds.schedule import JobKind, catalog
from worker import metrics

log = structlog.get_logger("worker.jobs")


class Summary(list[str]):
    """A job's summary lines, one per feed, and the feeds whose run did not succeed."""

    def __init__(self, lines: list[str], failed: list[str] | None = None) -> None:
        super().__init__(lines)
        self.failed = failed or []


Job = Callable[[Context], list[str]]


class JobFailed(FeedsyncError):
    """A job ran, but the run of at least one feed did not succeed; `lines` is its summary."""

    def __init__(self, job: str, lines: list[str], failed: list[str]) -> None:
        self.lines = lines
        super().__init__(f"{job}: the run of {', '.join(failed)} did not succeed: see sync:status.")


def _outcome_line(outcome: Outcome) -> str:
    if outcome.skipped_reason:
        return f"{outcome.feed.name}: skipped ({outcome.skipped_reason})"
    c = outcome.counts
    waiting = f", waiting for the API-call budget {c.deferred}" if c.deferred else ""
    line = (
        f"{outcome.feed.name}: new {c.new}, updated {c.updated}, deleted {c.deleted}, "
        f"skipped {c.skipped}, failed {c.failed}, synced {c.rows_synced}{waiting} "
        f"in {outcome.seconds:.2f} s"
    )
    if outcome.succeeded or outcome.status is None:
        return line
    return f"{line}; run {outcome.status.value}: {outcome.message or 'no reason recorded'}"


def _lines(outcomes: list[Outcome], nothing: str) -> Summary:
    for outcome in outcomes:
        metrics.observe_outcome(outcome)  # every job's outcomes pass here: one place to count them
    failed = [o.feed.name for o in outcomes if o.status is not None and not o.succeeded]
    return Summary([_outcome_line(o) for o in outcomes] or [nothing], failed)


def indexer_update_all_views(ctx: Context) -> list[str]:
    return _lines(indexer.update_all_views(ctx), "no indexer has a backlog")


def indexer_reindex_all_invalid(ctx: Context) -> list[str]:
    return _lines(indexer.reindex_all_invalid(ctx), "no invalid indexer")


def indexer_clean_all_changelogs(ctx: Context) -> list[str]:
    removed = indexer.clean_all_changelogs(ctx)
    return [f"{feed}: {count} changelog rows removed" for feed, count in removed.items()]


def sync_history_cleanup(ctx: Context) -> list[str]:
    days = ctx.plan.retention_days
    removed_runs, removed_errors = runs.remove_history(ctx.db, days)
    removed_jobs = job_runs.remove_older_than(ctx.db, days)
    return [
        f"removed {removed_runs} sync runs and {removed_errors} resolved sync errors older than {days} days",
        f"removed {removed_jobs} job runs older than {days} days",
    ]


def sync_error_notifications(ctx: Context) -> list[str]:
    return notifications.send_due(ctx).lines()


def _legacy_exporter(sales: bool) -> Job:
    def job(ctx: Context) -> list[str]:
        feeds = [f for f in ctx.registry if f.sales is sales]
        done = (
            indexer.isolated(f, functools.partial(exporter.export_pending, ctx, f)) for f in feeds
        )
        outcomes = [o for o in done if o is not None]
        return _lines(outcomes, "no legacy-mode item waiting to be sent")

    return job


def _resender(feed_name: str) -> Job:
    def job(ctx: Context) -> list[str]:
        feed = ctx.registry.get(feed_name)
        outcome = indexer.isolated(feed, functools.partial(exporter.resend_failed, ctx, feed))
        return _lines([outcome] if outcome else [], f"{feed_name}: no failed item due for a resend")

    return job


def jobs_for(ctx: Context) -> dict[str, Job]:
    """Every job this deployment runs, by beat entry name."""
    return jobs_in(ctx.registry)


def _function(job: CatalogJob) -> Job:
    """The function a catalog entry calls (feeds/schedule.py lists the jobs; this runs them)."""
    if job.kind is JobKind.RESEND_FAILED:
        assert job.feed is not None  # the catalog gives every resend job its feed
        return _resender(job.feed)
    return _FUNCTIONS[job.kind]


_FUNCTIONS: dict[JobKind, Job] = {
    JobKind.REINDEX_INVALID: indexer_reindex_all_invalid,
    JobKind.UPDATE_VIEWS: indexer_update_all_views,
    JobKind.LEGACY_EXPORT: _legacy_exporter(sales=False),
    JobKind.SALES_EXPORT: _legacy_exporter(sales=True),
    JobKind.CLEAN_CHANGELOGS: indexer_clean_all_changelogs,
    JobKind.HISTORY_CLEANUP: sync_history_cleanup,
    JobKind.ERROR_NOTIFICATIONS: sync_error_notifications,
}


def jobs_in(registry: FeedRegistry) -> dict[str, Job]:
    """Every job for these feeds, by beat entry name (no database needed: beat builds its schedule here)."""
    return {job.name: _function(job) for job in catalog(registry.names())}


def run_job(
    ctx: Context,
    name: str,
    *,
    tick: datetime | None = None,
    task_id: str | None = None,
    exclusive: bool = False,
) -> list[str]:
    """Run one job in this process and record the run (`cron:list`); binds the job name to its log lines.

    Raises JobFailed (recorded as an `error` job run) when the run of a feed did not succeed.
    `exclusive`: the caller holds the job's fleet lock, so no other run of the job is alive.
    """
    with (
        structlog.contextvars.bound_contextvars(job=name),
        job_runs.recorded(ctx.db, name, tick=tick, task_id=task_id, exclusive=exclusive) as record,
    ):
        log.info("job.started")
        started = time.monotonic()
        if closed := runs.close_abandoned(ctx.db):
            log.warning("runs.abandoned", closed=closed, reason=runs.ABANDONED)
        try:
            lines = jobs_for(ctx)[name](ctx)
        finally:
            metrics.observe_job(name, time.monotonic() - started)
        record.done(lines)
        failed = lines.failed if isinstance(lines, Summary) else []
        if failed:
            log.error("job.failed", seconds=round(time.monotonic() - started, 3), feeds=failed)
            raise JobFailed(name, lines, failed)
        log.info("job.finished", seconds=round(time.monotonic() - started, 3))
        return lines
