"""The embedded all-in-one runner: jobs on their cron schedule in this process, no broker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from croniter import croniter

from feeds.context import Context
from feeds.schedule import DEFAULT_CRONS, RESEND_CRON
from worker.jobs import jobs_for, run_job

log = structlog.get_logger("worker.embedded")


@dataclass
class Entry:
    name: str
    cron: str
    next_at: datetime


def schedule(ctx: Context, now: datetime) -> list[Entry]:
    """Each runnable job with its cron (TOML override or default) and next due time after `now`."""
    entries = []
    for name in jobs_for(ctx):
        configured = ctx.settings.file.jobs.get(name)
        cron = configured.cron if configured else DEFAULT_CRONS.get(name, RESEND_CRON)
        entries.append(Entry(name, cron, croniter(cron, now).get_next(datetime)))
    return entries


def run_forever(
    ctx: Context,
    stop: threading.Event,
    extra: Callable[[], None] | None = None,
    tick_s: float = 1.0,
) -> None:
    """Run due jobs until `stop` is set; a job that was due several times while busy runs once."""
    entries = schedule(ctx, datetime.now(UTC))
    for name in ("indexer_reindex_all_invalid", "indexer_update_all_views"):
        _run(ctx, name)  # start in sync rather than waiting for the first minute
    while not stop.wait(tick_s):
        if extra is not None:
            extra()
        now = datetime.now(UTC)
        for entry in entries:
            if entry.next_at <= now:
                _run(ctx, entry.name)
                entry.next_at = croniter(entry.cron, datetime.now(UTC)).get_next(datetime)


def _run(ctx: Context, name: str) -> None:
    try:
        for line in run_job(ctx, name):
            log.info("job.summary", job=name, summary=line)
    except Exception:
        # One failing job must not stop the runner; the error is logged and the job runs again next tick.
        log.exception("job.failed", job=name)
