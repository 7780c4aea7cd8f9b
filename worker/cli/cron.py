"""`cron:run JOB`: run one scheduled job now, in this process."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from config.settings import Settings
from feeds.context import open_context
from feeds.schedule import job_names
from worker.jobs import jobs_for, run_job


def register(sub: Any) -> None:
    p = sub.add_parser("cron:run", help="run one scheduled job now, in this process")
    p.add_argument("job")
    p.set_defaults(handler=cron_run, quiet_logs=False)


def cron_run(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    jobs = jobs_for(ctx)
    if args.job not in jobs:
        known = job_names(ctx.registry.names())
        if args.job in known:
            message = f"The job '{args.job}' is not available in this version; available: {', '.join(jobs)}."
        else:
            message = f"Unknown job '{args.job}'; accepted jobs: {', '.join(known)}."
        print(message, file=sys.stderr)
        return 1
    started = time.monotonic()
    for line in run_job(ctx, args.job):
        print(line)
    print(f"{args.job} finished in {time.monotonic() - started:.2f} s")
    return 0
