"""`cron:list` (every job, its cron, last run, next run and group), `cron:run JOB` and
`cron:run --group NAME` (run one job, or every job of a group, now, in this process)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from config.context import open_context
from config.settings import Settings
from feeds.context import Context
from feeds.history import job_runs
from feeds.schedule import Job, catalog, cron_of, group_named, in_group, job_names, next_fire
from worker.cli.output import say
from worker.cli.table import render
from worker.jobs import JobFailed, jobs_for, run_job


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cron:list", help="every job: its cron, last run and status, next run, group"
    )
    p.add_argument("--group", default=None, help="only the jobs of this cron group")
    p.set_defaults(handler=cron_list)
    p = sub.add_parser(
        "cron:run", help="run one scheduled job, or every job of a group, now, in this process"
    )
    p.add_argument("job", nargs="?", default=None)
    p.add_argument("--group", default=None, help="run every job of this cron group, in order")
    p.set_defaults(handler=cron_run, quiet_logs=False)


def cron_list(args: argparse.Namespace, settings: Settings) -> int:
    group = group_named(args.group) if args.group is not None else None  # before any work
    ctx = open_context(settings)
    job_runs.close_dead(ctx.db)  # never show a job of a killed process as running
    last = job_runs.last_runs(ctx.db)
    disabled = set(settings.file.groups.disabled())
    now = datetime.now(UTC)
    jobs = _catalog(ctx)
    rows = []
    for job in in_group(jobs, group) if group is not None else jobs:
        cron = cron_of(job.name, settings.crons())
        run = last.get(job.name)
        rows.append(
            (
                job.name,
                cron,
                _stamp(run.started_at) if run else "never",
                run.status.value if run else "",
                "disabled" if job.group in disabled else _stamp(next_fire(cron, now)),
                job.group.value,
            )
        )
    print(render(("Job", "Cron", "Last Run", "Status", "Next Run", "Group"), rows))
    return 0


def _catalog(ctx: Context) -> list[Job]:
    """The catalog's jobs this version can run (all of them, unless a job was withdrawn)."""
    runnable = jobs_for(ctx)
    return [job for job in catalog(ctx.registry.names()) if job.name in runnable]


def _stamp(moment: datetime) -> str:
    """UTC to the second, as indexer:status prints its times."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def cron_run(args: argparse.Namespace, settings: Settings) -> int:
    if (args.job is None) == (args.group is None):
        say("cron:run runs one job or one group: give a job name, or --group NAME.", error=True)
        return 1
    if args.group is not None:
        group = group_named(args.group)  # an unknown group: refused before any work
        ctx = open_context(settings)
        names = [job.name for job in in_group(_catalog(ctx), group)]
    else:
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
        names = [args.job]
    failed = False
    for name in names:
        failed |= not _run_one(ctx, name)
    return 1 if failed else 0


def _run_one(ctx: Context, name: str) -> bool:
    """Run one job and print its summary; whether every feed's run succeeded."""
    started = time.monotonic()
    try:
        lines = run_job(ctx, name)
    except JobFailed as failed:
        for line in failed.lines:
            say(line)
        say(str(failed), error=True)
        return False
    for line in lines:
        say(line)
    say(f"{name} finished in {time.monotonic() - started:.2f} s")
    return True
