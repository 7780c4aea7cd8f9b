"""`cron:list` (every job, its cron, last run and next run) and `cron:run JOB` (run one now, here)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from config.context import open_context
from config.settings import Settings
from feeds.history import job_runs
from feeds.schedule import cron_of, job_names, next_fire
from worker.cli.output import say
from worker.cli.table import render
from worker.jobs import JobFailed, jobs_for, run_job


def register(sub: Any) -> None:
    p = sub.add_parser("cron:list", help="every job: its cron, last run and status, next run")
    p.set_defaults(handler=cron_list)
    p = sub.add_parser("cron:run", help="run one scheduled job now, in this process")
    p.add_argument("job")
    p.set_defaults(handler=cron_run, quiet_logs=False)


def cron_list(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    job_runs.close_dead(ctx.db)  # never show a job of a killed process as running
    last = job_runs.last_runs(ctx.db)
    now = datetime.now(UTC)
    rows = []
    for job in jobs_for(ctx):
        cron = cron_of(job, settings.crons())
        run = last.get(job)
        rows.append(
            (
                job,
                cron,
                _stamp(run.started_at) if run else "never",
                run.status.value if run else "",
                _stamp(next_fire(cron, now)),
            )
        )
    print(render(("Job", "Cron", "Last Run", "Status", "Next Run"), rows))
    return 0


def _stamp(moment: datetime) -> str:
    """UTC to the second, as indexer:status prints its times."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def cron_run(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    jobs = jobs_for(ctx)
    if args.job not in jobs:
        known = job_names(ctx.registry.names())
        if args.job in known:
            message = f"The job '{args.job}' is not available in this version; available: {', '.join(jobs)}."
        else:
            message = f"Unknown job '{args.job}'; accepted jobs: {', '.join(known)}."
        say(message, error=True)
        return 1
    started = time.monotonic()
    try:
        lines = run_job(ctx, args.job)
    except JobFailed as failed:
        for line in failed.lines:
            say(line)
        say(str(failed), error=True)
        return 1
    for line in lines:
        say(line)
    say(f"{args.job} finished in {time.monotonic() - started:.2f} s")
    return 0
