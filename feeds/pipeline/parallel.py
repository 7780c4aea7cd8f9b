"""Spread the batches of a full reindex over worker processes (building documents is CPU-bound).

Each process opens its own context and does whole batches of the same run (build → classify →
deliver → record); the parent only pages the key ranges and adds up the counts. At most two
batches per process are in flight, so memory stays flat whatever the feed size.

The worker processes end with their parent, however it ends (kill -9 included): an orphan would
go on sending batches nobody records, then idle holding its database connections.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

from feeds.definitions import Keys, Operation
from feeds.history.runs import Counts

if TYPE_CHECKING:
    from feeds.context import Context
    from feeds.pipeline.indexer import Batch
    from feeds.pipeline.run import Run, RunOptions

_context: Context | None = None
_runs: dict[str, Run] = {}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCH_PARENT_S = 0.2


def may_start_processes() -> bool:
    """Whether this process may have worker processes: a daemonic one (a Celery pool process) may not."""
    return not multiprocessing.current_process().daemon


def _start(reopen: Callable[[], Context], parent: int) -> None:
    global _context
    _end_with(parent)
    _context = reopen()


def _end_with(parent: int) -> None:
    """End this process as soon as `parent` dies: SIGKILL from the kernel on Linux, and everywhere
    a thread that watches for this process being handed to another parent."""
    if sys.platform.startswith("linux"):
        # Sent when the parent's thread that started us exits: map_batches' thread, which outlives
        # the pool (it shuts the pool down before it returns), so only when the parent dies.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the line above: no signal will come
    threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_WATCH_PARENT_S)
    os._exit(1)  # mid-batch: nothing of it is recorded, so the next run sends it again


def _batch(
    feed_name: str, run_id: str, operation: Operation, options: RunOptions, keys: Keys
) -> tuple[Counts, str | None]:
    from feeds.pipeline.batch import process_batch
    from feeds.pipeline.run import new_run

    assert _context is not None, "worker process not started"
    run = _runs.get(run_id)
    if run is None:
        run = _runs[run_id] = new_run(
            _context, _context.registry.get(feed_name), operation, options, run_id
        )
    return process_batch(_context, run, keys), run.delivery.config_error


def map_batches(
    reopen: Callable[[], Context], run: Run, batches: Iterable[Batch], processes: int
) -> Iterator[tuple[Batch, Counts]]:
    """Each batch with its counts, in order, processed by `processes` spawned workers (added to `run`)."""
    # spawn, not fork: a forked child would share the parent's database connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start, initargs=(reopen, os.getpid())
    ) as pool:
        pending: deque[tuple[Batch, Future[tuple[Counts, str | None]]]] = deque()

        def collect() -> tuple[Batch, Counts]:
            batch, future = pending.popleft()
            counts, config_error = future.result()
            run.counts += counts
            run.committed_batches += 1
            run.delivery.config_error = run.delivery.config_error or config_error
            return batch, counts

        try:
            for batch in batches:
                future = pool.submit(
                    _batch, run.feed.name, run.id, run.operation, run.options, batch.keys
                )
                pending.append((batch, future))
                if len(pending) >= 2 * processes:
                    yield collect()
            while pending:
                yield collect()
        finally:
            for _, waiting in pending:
                waiting.cancel()
