"""Fan-out of a full resync: each planned key range is a `feedsync.resync_range` task on the fleet.

The coordinator (`saas:resync --fleet`) keeps a bounded number of ranges in flight, two per worker
process, and adds up each range's counts into its run as the ranges finish, in any order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from feeds.errors import FeedsyncError
from feeds.history.runs import Counts
from feeds.pipeline.indexer import Batch, BatchMapper
from feeds.pipeline.ranges import counts_from, options_dict
from feeds.pipeline.run import Run
from feeds.urls import hide_password

RANGE_TASK = "feedsync.resync_range"
_POLL_S = 0.05


def worker_processes(app: Celery, timeout_s: float = 1.0) -> int:
    """How many task processes the running workers have; a sentence when none answers."""
    try:
        # No retry: an unreachable broker is a sentence at once, not after kombu's retries.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
        stats: dict[str, Any] = app.control.inspect(timeout=timeout_s).stats() or {}
    except (OperationalError, OSError) as exc:
        raise FeedsyncError(
            f"The broker of BROKER_URL ({hide_password(str(app.conf.broker_url))}) cannot be "
            f"reached ({str(exc).rstrip('.')}); start it, or drop --fleet."
        ) from None
    processes = sum(int(s.get("pool", {}).get("max-concurrency", 1)) for s in stats.values())
    if not processes:
        raise FeedsyncError(
            "No Celery worker answered on BROKER_URL; start one with `celery -A worker worker` "
            "(same DATABASE_URL and EXPORT_URL), or drop --fleet."
        )
    return processes


def celery_mapper(app: Celery, in_flight: int) -> BatchMapper:
    """A BatchMapper sending each range as a task and yielding it with its counts once done."""

    def mapper(run: Run, batches: Iterable[Batch]) -> Iterator[tuple[Batch, Counts]]:
        pending: list[tuple[Batch, Any]] = []
        try:
            for batch in batches:
                pending.append((batch, _send(app, run, batch)))
                while len(pending) >= in_flight:
                    yield _collect(run, pending)
            while pending:
                yield _collect(run, pending)
        finally:
            for _, result in pending:
                result.forget()

    return mapper


def _send(app: Celery, run: Run, batch: Batch) -> Any:
    return app.send_task(
        RANGE_TASK,
        kwargs={
            "feed": run.feed.name,
            "run_id": run.id,
            "operation": run.operation.value,
            "options": options_dict(run.options),
            "seq": batch.seq,
            "lo": batch.keys.lo,
            "hi": batch.keys.hi,
            "entities": batch.entities,
        },
    )


def _collect(run: Run, pending: list[tuple[Batch, Any]]) -> tuple[Batch, Counts]:
    """Wait for the first range to finish (any order), add its counts to the run."""
    while True:
        for index, (batch, result) in enumerate(pending):
            if result.ready():
                del pending[index]
                answer = result.get(propagate=True)
                counts = counts_from(answer["counts"])
                run.counts += counts
                run.committed_batches += 1
                run.delivery.config_error = run.delivery.config_error or answer["config_error"]
                return batch, counts
        time.sleep(_POLL_S)
