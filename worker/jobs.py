"""The cron jobs of SPEC §3 that run in this version: thin calls into the domain, each returning a summary."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from feeds import indexer
from feeds.context import Context

log = structlog.get_logger("worker.jobs")


def _outcome_line(outcome: indexer.Outcome) -> str:
    if outcome.skipped_reason:
        return f"{outcome.feed.name}: skipped ({outcome.skipped_reason})"
    c = outcome.counts
    return (
        f"{outcome.feed.name}: new {c.new}, updated {c.updated}, deleted {c.deleted}, "
        f"skipped {c.skipped}, failed {c.failed} in {outcome.seconds:.2f} s"
    )


def indexer_update_all_views(ctx: Context) -> list[str]:
    outcomes = indexer.update_all_views(ctx)
    return [_outcome_line(o) for o in outcomes] or ["no schedule-mode indexer is due"]


def indexer_reindex_all_invalid(ctx: Context) -> list[str]:
    outcomes = indexer.reindex_all_invalid(ctx)
    return [_outcome_line(o) for o in outcomes] or ["no invalid indexer"]


def indexer_clean_all_changelogs(ctx: Context) -> list[str]:
    return [
        f"{feed}: {removed} changelog rows removed"
        for feed, removed in indexer.clean_all_changelogs(ctx).items()
    ]


JOBS: dict[str, Callable[[Context], list[str]]] = {
    "indexer_reindex_all_invalid": indexer_reindex_all_invalid,
    "indexer_update_all_views": indexer_update_all_views,
    "indexer_clean_all_changelogs": indexer_clean_all_changelogs,
}


def run_job(ctx: Context, name: str) -> list[str]:
    """Run one job in this process; binds the job name to every log line it writes."""
    with structlog.contextvars.bound_contextvars(job=name):
        log.info("job.started")
        lines = JOBS[name](ctx)
        log.info("job.finished")
        return lines
