"""Spread the batches of a full reindex over worker processes (building documents is CPU-bound).

Each process opens its own context and does whole batches (build → diff → export → record); the
parent only pages the key ranges and adds up the counts. At most two batches per process are in
flight, so memory stays flat whatever the feed size.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

from config.settings import Settings
from feeds.definitions import Keys

if TYPE_CHECKING:
    from feeds.context import Context
    from feeds.indexer import Counts

_context: Context | None = None


def _start(settings: Settings) -> None:
    global _context
    from feeds.context import open_context

    _context = open_context(settings, migrate=False)


def _batch(feed_name: str, keys: Keys) -> Counts:
    from feeds.indexer import process_batch

    assert _context is not None, "worker process not started"
    return process_batch(_context, _context.registry.get(feed_name), keys)


def map_batches(
    settings: Settings, feed_name: str, batches: Iterable[Keys], processes: int
) -> Iterator[Counts]:
    """The counts of each batch, in order, processed by `processes` spawned workers."""
    # spawn, not fork: a forked child would share the parent's database connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start, initargs=(settings,)
    ) as pool:
        pending: deque[Future[Counts]] = deque()
        try:
            for keys in batches:
                pending.append(pool.submit(_batch, feed_name, keys))
                if len(pending) >= 2 * processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
