"""`sync:status` and `sync:errors`: the sync runs and the current sync errors (SPEC §6)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson

from config.context import open_context
from config.settings import Settings
from feeds.definitions import Operation, RunStatus
from feeds.export.protocol import ErrorCategory
from feeds.history import csv_export, read_model, runs
from feeds.pipeline.diff import iso
from worker.cli.demo import positive
from worker.cli.table import render


def register(sub: Any) -> None:
    p = sub.add_parser("sync:status", help="recent sync runs")
    p.add_argument("--feed")
    p.add_argument("--operation", choices=[o.value for o in Operation])
    p.add_argument("--status", choices=[s.value for s in RunStatus])
    p.add_argument("--since", type=_date, help="YYYY-MM-DD or an ISO 8601 time (UTC)")
    p.add_argument(
        "--until",
        type=_end,
        help="runs started before: an ISO 8601 time (UTC), or YYYY-MM-DD (that day included)",
    )
    p.add_argument("--limit", type=positive, default=50, help="at most this many runs")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=status)
    p = sub.add_parser("sync:errors", help="current sync errors")
    p.add_argument("--feed")
    p.add_argument("--category", choices=[c.value for c in ErrorCategory])
    p.add_argument("--all", action="store_true", help="include resolved errors")
    p.add_argument("--run", help="only the errors of this run (its id, from sync:status)")
    p.add_argument("--csv", action="store_true", help="write CSV to stdout")
    p.set_defaults(handler=errors)


RUN_COLUMNS = [
    "started_at",
    "finished_at",
    "feed",
    "operation",
    "status",
    "new",
    "updated",
    "deleted",
    "failed",
    "skipped",
    "rows_synced",
]
ERROR_COLUMNS = csv_export.ERROR_CSV_COLUMNS


def status(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    if args.feed:
        ctx.registry.get(args.feed)
    runs.close_abandoned(ctx.db)  # never show a run of a dead process as running
    with ctx.db.connect() as conn:
        rows = read_model.list_runs(
            conn,
            feed=args.feed,
            operation=args.operation,
            status=args.status,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
    if args.json:
        for row in rows:
            print(orjson.dumps({k: _plain(v) for k, v in asdict(row).items()}).decode())
        return 0
    headers = [
        "Start",
        "End",
        "Feed",
        "Operation",
        "Status",
        "New",
        "Updated",
        "Deleted",
        "Failed",
        "Skipped",
        "Synced",
    ]
    print(render(headers, [[_cell(getattr(row, c)) for c in RUN_COLUMNS] for row in rows]))
    return 0


def errors(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    if args.feed:
        ctx.registry.get(args.feed)
    with ctx.db.connect() as conn:
        rows = read_model.list_errors(
            conn,
            feed=args.feed,
            category=args.category,
            include_resolved=args.all,
            run_id=args.run,
        )
    if args.csv:
        for chunk in csv_export.errors_csv(rows):
            sys.stdout.write(chunk)
        return 0
    headers = ["Feed", "Item", "Category", "Code", "Message", "First seen", "Last seen", "Attempts"]
    print(render(headers, [[_cell(getattr(row, c)) for c in ERROR_COLUMNS[:8]] for row in rows]))
    return 0


def _plain(value: object) -> object:
    return iso(value) if isinstance(value, datetime) else value


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) > 60:
        return value[:57] + "…"
    return value


def _date(text: str) -> datetime:
    try:
        return read_model.parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _end(text: str) -> datetime:
    """The end of a range: a bare date includes that day, as `GET /sync/runs?until=` reads it."""
    try:
        return read_model.parse_moment(text, end_of_day=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
