"""`saas:resync --feed NAME`: a full sync of one feed, with a progress bar on a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config.context import open_context
from config.settings import Settings
from feeds.errors import FeedsyncError, LockedError
from feeds.history.runs import Counts
from feeds.pipeline.indexer import BatchMapper
from feeds.pipeline.resync import (
    ResyncRequest,
    id_type_named,
    parse_ids,
    product_keys,
    resync,
    total_entities,
)
from feeds.tracking import changelog
from worker.cli.demo import positive
from worker.cli.output import say


def register(sub: Any) -> None:
    # Adobe's options, in the order and with the meanings of its `saas:resync --help`; --fleet is ours.
    p = sub.add_parser(
        "saas:resync",
        help="full sync of one feed (resends unchanged items too)",
        description="Re-syncs feed data to the destination.",
    )
    p.add_argument(
        "--feed", required=True, metavar="FEED", help="feed name (or indexer id) to fully re-sync"
    )
    p.add_argument(
        "--no-reindex",
        action="store_true",
        help="re-submit the feed data the feed table holds only; does not re-index (legacy-mode feeds)",
    )
    p.add_argument(
        "--cleanup-feed", action="store_true", help="clean up the feed table before the sync"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="dry run: collect and count; data is not exported, nothing is saved",
    )
    p.add_argument(
        "--thread-count",
        type=positive,
        default=1,
        metavar="THREAD-COUNT",
        help="synchronization thread count: batches sent in parallel",
    )
    p.add_argument(
        "--batch-size",
        type=positive,
        default=None,
        metavar="BATCH-SIZE",
        help="synchronization batch size: items per request",
    )
    p.add_argument(
        "--continue-resync",
        action="store_true",
        help="continue the resync from the last stored position",
    )
    p.add_argument(
        "--by-ids",
        default=None,
        metavar="BY-IDS",
        help="partial resync of these ids, comma-separated: item ids, or what --id-type says",
    )
    p.add_argument(
        "--id-type",
        default=None,
        metavar="ID-TYPE",
        help="type of the --by-ids values: sku or productId (feeds of products); default: item ids",
    )
    p.add_argument(
        "--fleet",
        action="store_true",
        help="spread the key ranges over the Celery workers (needs BROKER_URL and running workers)",
    )
    p.set_defaults(handler=resync_command)


def resync_command(args: argparse.Namespace, settings: Settings) -> int:
    mapper = _fleet_mapper(settings) if args.fleet else None  # the broker first: nothing written
    ctx = open_context(settings)
    feed = ctx.registry.get(args.feed)
    with ctx.source.connect() as conn:
        changelog.require_tables(conn, feed)
    by_ids = parse_ids(args.by_ids) if args.by_ids is not None else ()
    if args.id_type is not None:
        id_type = id_type_named(args.id_type)
        if not by_ids:
            raise FeedsyncError(
                "--id-type says what the --by-ids values are; accepted: --by-ids with it, "
                "such as --by-ids SKU-1,SKU-2 --id-type sku."
            )
        by_ids = product_keys(ctx, feed, by_ids, id_type)
    request = ResyncRequest(
        no_reindex=args.no_reindex,
        cleanup_feed=args.cleanup_feed,
        by_ids=by_ids,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
        threads=args.thread_count,
        continue_resync=args.continue_resync,
        fleet=args.fleet,
    )
    started = time.monotonic()
    try:
        with _progress(feed.name, total_entities(ctx, feed, request)) as report:
            outcome = resync(ctx, feed, request, report, mapper)
    except LockedError:
        say(f"{feed.title} index is locked by another reindex process. Skipping.")
        return 1
    except KeyboardInterrupt:
        say(
            f"\nInterrupted: run `python -m worker saas:resync --feed {feed.name} --continue-resync` to resume.",
            error=True,
        )
        return 130
    seconds = time.monotonic() - started
    c = outcome.counts
    if request.dry_run:
        say(
            f"Dry run of {feed.name}: new {c.new}, updated {c.updated}, deleted {c.deleted}, skipped {c.skipped}; "
            f"nothing was sent or changed ({seconds:.1f} s)"
        )
        return 0
    status = outcome.status.value if outcome.status else "unknown"
    say(
        f"Resync of {feed.name} {status}: new {c.new}, updated {c.updated}, deleted {c.deleted}, skipped {c.skipped}, "
        f"sent {c.rows_synced}, failed {c.failed} in {seconds:.1f} s (run {outcome.run_id})"
    )
    if outcome.message:
        say(f"  {outcome.message}", error=True)
    return 0 if outcome.succeeded else 1


def _fleet_mapper(settings: Settings) -> BatchMapper:
    """Send the key ranges to the workers, two in flight per worker process."""
    if not settings.broker_url:
        raise FeedsyncError(
            "--fleet sends the resync to the Celery workers; set BROKER_URL to their broker (redis://host:6379/0), or drop --fleet."
        )
    from worker.app import create_app
    from worker.fanout import celery_mapper, worker_processes

    app = create_app(settings)
    return celery_mapper(app, in_flight=2 * worker_processes(app))


@contextmanager
def _progress(feed: str, total: int) -> Iterator[Any]:
    """A rich progress bar on a terminal; a plain line per batch otherwise (logs, CI, pipes)."""
    if not sys.stdout.isatty():

        def plain(counts: Counts, done: int) -> None:
            say(
                f"{feed}: {done}/{total} entities, new {counts.new}, updated {counts.updated}, deleted {counts.deleted}, "
                f"skipped {counts.skipped}, sent {counts.rows_synced}, failed {counts.failed}"
            )

        yield plain
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(feed, total=total, counts="")

        def fancy(counts: Counts, done: int) -> None:
            text = f"sent {counts.rows_synced} failed {counts.failed} skipped {counts.skipped}"
            bar.update(task, completed=min(done, total), counts=text)

        yield fancy
