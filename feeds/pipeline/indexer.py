"""Indexers: full and partial reindex of a feed, its mode and status, and the indexer cron jobs."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog
from sqlalchemy import column, func, select, table
from sqlalchemy.engine import Connection

from feeds import errors
from feeds.context import Context
from feeds.definitions import Feed, IndexerMode, IndexerStatus, Keys, Operation, RunStatus
from feeds.errors import LockLostError, one_line
from feeds.history.runs import Counts
from feeds.pipeline import parallel, stopping
from feeds.pipeline.batch import process_batch
from feeds.pipeline.run import (
    SUCCEEDED,
    FeedBusy,
    Outcome,
    Run,
    RunOptions,
    Skip,
    collect_only,
    feed_lock,
    lock_name,
    locked_run,
    open_run,
    outcome_of,
    skipped,
)
from feeds.state import database, indexer_state
from feeds.state.locks import is_locked
from feeds.tracking import changelog

log = structlog.get_logger("feeds.indexer")

__all__ = ["Counts", "Outcome", "reindex", "update_view", "update_all_views", "reindex_all_invalid"]


@dataclass(frozen=True)
class Batch:
    """The entities of one round of a full reindex, and how many there are."""

    keys: Keys
    entities: int
    seq: int | None = None  # its place in a planned fan-out resync


Progress = Callable[[Counts, int], None]  # counts so far, entities done so far
AfterBatch = Callable[[Batch], None]
# Processes batches elsewhere (e.g. Celery workers) and yields each with its counts, added to the run.
BatchMapper = Callable[[Run, Iterable[Batch]], Iterator[tuple[Batch, Counts]]]


def entity_batches(
    ctx: Context, feed: Feed, batch_size: int, start_after: int | None = None
) -> Iterator[Batch]:
    """Key ranges covering the driving table (after `start_after`), then everything past its last key (deleted tail).

    A row whose key is NULL is no entity (as the changelog triggers ignore NULL ids): PostgreSQL
    sorts NULL last, and a range ending at it would be open, then the paging would start over.
    """
    key = table(feed.key_table, column(feed.key_column)).c[feed.key_column]
    last = start_after
    while True:
        query = select(key).where(key.is_not(None)).order_by(key).limit(batch_size)
        if last is not None:
            query = query.where(key > last)
        with ctx.source.connect() as conn:
            batch = conn.scalars(query).all()
        if not batch:
            yield Batch(Keys(lo=last), 0)
            return
        yield Batch(Keys(lo=last, hi=batch[-1]), len(batch))
        last = batch[-1]


def count_entities(ctx: Context, feed: Feed) -> int:
    with ctx.source.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table(feed.key_table))) or 0)


def full_reindex(
    ctx: Context,
    run: Run,
    *,
    progress: Progress | None = None,
    start_after: int | None = None,
    after_batch: AfterBatch | None = None,
    batches: Iterable[Batch] | None = None,
    mapper: BatchMapper | None = None,
) -> Counts:
    """Rebuild the whole feed: every entity of the source, and deletes for entities gone from it."""
    feed = run.feed
    if batches is None:
        batches = entity_batches(
            ctx, feed, ctx.plan.feed(feed.name).collect_batch_size, start_after
        )
    done: Iterator[tuple[Batch, Counts]]
    if mapper is not None:
        done = mapper(run, batches)
    else:
        spread = reindex_spread(ctx, feed)
        run.log.info("reindex.processes", processes=spread.processes, reason=spread.reason)
        if spread.processes > 1:
            done = parallel.map_batches(ctx.reopen, run, batches, spread.processes)
        else:
            done = ((batch, process_batch(ctx, run, batch.keys)) for batch in batches)
    entities = 0
    for batch, _ in done:
        entities += batch.entities
        run.renew_lock()
        if after_batch is not None:
            after_batch(batch)
        if progress is not None and batch.entities:
            progress(run.counts, entities)
        stopping.check()  # warm shutdown: every finished batch is committed
    return run.counts


@dataclass(frozen=True)
class Spread:
    """How many processes share a full reindex, and why (logged as `reindex.processes`)."""

    processes: int
    reason: str


def reindex_spread(ctx: Context, feed: Feed) -> Spread:
    """Configured, or one process per core (max 4) for a feed of 5 chunks or more; one process
    where this one may not start processes."""
    configured = ctx.plan.feed(feed.name).reindex_processes
    if not parallel.may_start_processes():
        # A Celery pool process is daemonic: Python refuses it children. The worker's pool is
        # already one process per core, running the other jobs; `saas:resync --fleet` spreads a
        # full resync over the whole fleet.
        return Spread(
            1,
            "a daemonic process (a Celery pool process) may not start processes: the batches "
            "run in this one (saas:resync --fleet spreads a resync over the workers)",
        )
    if configured is not None:
        return Spread(configured, f"feeds.{feed.name}.reindex_processes = {configured}")
    cores = min(os.cpu_count() or 1, 4)
    if cores == 1:
        return Spread(1, "one core")
    entities = count_entities(ctx, feed)
    chunk = ctx.plan.feed(feed.name).collect_batch_size
    if entities < 5 * chunk:
        # Starting processes costs more than it saves on a small feed.
        return Spread(1, f"{entities} entities, fewer than 5 chunks of {chunk}")
    return Spread(cores, f"{entities} entities, one process per core (at most 4)")


def reindex_processes(ctx: Context, feed: Feed) -> int:
    """How many processes share a full reindex of `feed` in this process."""
    return reindex_spread(ctx, feed).processes


def partial_reindex(ctx: Context, run: Run, upto: int) -> Counts:
    """Rebuild the entities recorded in the changelog after the saved version, chunk by chunk."""
    feed = run.feed
    with ctx.db.connect() as conn:
        after = indexer_state.get_state(conn, feed.indexer_id).version_id
    chunk_size = ctx.plan.feed(feed.name).collect_batch_size
    while after < upto:
        with ctx.source.connect() as src:
            chunk = changelog.read(src, feed, after, upto, chunk_size)
        if chunk is None:
            break
        # The pointer moves in the same transaction as the feed rows: done work and pointer agree.
        advance = functools.partial(_advance, indexer_id=feed.indexer_id, version=chunk.to_version)
        process_batch(ctx, run, Keys(ids=chunk.entity_ids), then=advance)
        after = chunk.to_version
        run.renew_lock()
        stopping.check()
    return run.counts


def _advance(conn: Connection, *, indexer_id: str, version: int) -> None:
    indexer_state.set_version(conn, indexer_id, version)


def reindex(
    ctx: Context,
    feed: Feed,
    *,
    progress: Progress | None = None,
    operation: Operation = Operation.FULL_SYNC,
    options: RunOptions | None = None,
    start_after: int | None = None,
    after_batch: AfterBatch | None = None,
    on_start: Callable[[Run], None] | None = None,
    batches: Iterable[Batch] | None = None,
    mapper: BatchMapper | None = None,
) -> Outcome:
    """`indexer:reindex` for one feed: hold its lock, mark it working, rebuild, mark it valid.

    Raises LockedError when another process holds the indexer.
    """
    with feed_lock(ctx, feed) as lock:
        with ctx.db.begin() as conn:
            indexer_state.set_status(conn, feed.indexer_id, IndexerStatus.WORKING)
        # Changes logged before the rebuild starts are covered by it (those surely committed).
        with ctx.db.connect() as conn:
            after = indexer_state.get_state(conn, feed.indexer_id).version_id
        with ctx.source.connect() as src:
            version = changelog.safe_version(src, feed, after)
        try:
            run_options = options or RunOptions(send=not collect_only(ctx, feed))
            # Not locked_run: the indexer's status changes under the same lock, before and after.
            with open_run(ctx, feed, operation, run_options, lock=lock) as run:
                if on_start is not None:
                    on_start(run)
                full_reindex(
                    ctx,
                    run,
                    progress=progress,
                    start_after=start_after,
                    after_batch=after_batch,
                    batches=batches,
                    mapper=mapper,
                )
        except BaseException:
            _end_rebuild(ctx, feed, rebuilt=False)
            raise
        _end_rebuild(ctx, feed, rebuilt=run.status in SUCCEEDED, version=version)
    database.refresh_statistics(ctx.db, ["feed_items"])  # it may have written every row
    return outcome_of(run)


def _end_rebuild(ctx: Context, feed: Feed, *, rebuilt: bool, version: int = 0) -> None:
    """Valid after a rebuild that succeeded, with the changelog pointer moved to where it started;
    `Reindex required` after one that failed, as Magento leaves it. Suspended stays suspended."""
    with ctx.db.begin() as conn:
        current = indexer_state.get_state(conn, feed.indexer_id)
        if current.status is IndexerStatus.SUSPENDED:
            status = IndexerStatus.SUSPENDED
        else:
            status = IndexerStatus.VALID if rebuilt else IndexerStatus.INVALID
        indexer_state.set_status(conn, feed.indexer_id, status)
        if rebuilt and version > current.version_id:
            indexer_state.set_version(conn, feed.indexer_id, version)


def update_view(ctx: Context, feed: Feed) -> Outcome | None:
    """Partial sync of one indexer from its changelog; None when nothing is due.

    Schedule-mode indexers are synced by the minute job; realtime ones by the listener at once,
    and by the minute job too for whatever the listener missed (it was down, say).
    """
    with ctx.db.connect() as conn:
        state = indexer_state.get_state(conn, feed.indexer_id)
    if state.status is not IndexerStatus.VALID:
        return None
    with ctx.source.connect() as src:
        upto = changelog.safe_version(src, feed, state.version_id)
    if upto <= state.version_id:
        return None  # no backlog: no run to record
    options = RunOptions(send=not collect_only(ctx, feed))
    try:
        with locked_run(ctx, feed, Operation.PARTIAL_SYNC, options) as run:
            partial_reindex(ctx, run, upto)
    except FeedBusy:
        log.info("partial_sync.skipped", feed=feed.name, reason="locked by another process")
        return skipped(feed, Skip.LOCKED)
    return outcome_of(run)


def update_all_views(ctx: Context) -> list[Outcome]:
    """`indexer_update_all_views`: partial sync of every indexer with a backlog (realtime ones: their leftovers)."""
    ensure_subscriptions(ctx)
    outcomes = (isolated(feed, functools.partial(update_view, ctx, feed)) for feed in ctx.registry)
    return [outcome for outcome in outcomes if outcome is not None]


def isolated(feed: Feed, work: Callable[[], Outcome | None]) -> Outcome | None:
    """Run one feed's part of a job; a failure (its run recorded as failed, if it had one) becomes
    its outcome instead of stopping the other feeds. A stop request still stops the job."""
    started = time.monotonic()
    try:
        return work()
    except (errors.StopRequested, LockLostError):
        raise
    except Exception as exc:
        message = one_line(exc)[:2000]
        log.error("feed.failed", feed=feed.name, error=message)
        return Outcome(
            feed, Counts(), time.monotonic() - started, status=RunStatus.ERROR, message=message
        )


def reindex_all_invalid(ctx: Context) -> list[Outcome]:
    """`indexer_reindex_all_invalid`: full reindex of every invalid indexer (and of one left `working` by a dead process)."""
    ensure_subscriptions(ctx)
    outcomes = []
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
    for feed in ctx.registry:
        status = states[feed.indexer_id].status
        stale = status is IndexerStatus.WORKING and not is_locked(ctx.db, lock_name(feed))
        if status is not IndexerStatus.INVALID and not stale:
            continue
        outcome = isolated(feed, functools.partial(_reindex_invalid, ctx, feed))
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def _reindex_invalid(ctx: Context, feed: Feed) -> Outcome:
    try:
        return reindex(ctx, feed, operation=Operation.REINDEX_INVALID)
    except FeedBusy:
        log.info("reindex.skipped", feed=feed.name, reason="locked by another process")
        return skipped(feed, Skip.LOCKED)


def clean_all_changelogs(ctx: Context) -> dict[str, int]:
    """`indexer_clean_all_changelogs`: delete processed changelog rows (the newest processed one stays)."""
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
    removed = {
        feed.name: changelog.clean(ctx.source, feed, states[feed.indexer_id].version_id)
        for feed in ctx.registry
    }
    log.info("changelogs.cleaned", removed=sum(removed.values()))
    return removed


def ensure_subscriptions(ctx: Context) -> None:
    """Install the triggers each indexer's mode needs where they lack (e.g. source tables created since)."""
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
    for feed in ctx.registry:
        notify = states[feed.indexer_id].mode is IndexerMode.REALTIME
        with ctx.source.connect() as src:
            if changelog.is_tracked(src, feed, notify=notify) or changelog.missing_tables(
                src, feed
            ):
                continue
        version = changelog.subscribe(ctx.source, feed, notify=notify)
        with ctx.db.begin() as conn:
            if (
                states[feed.indexer_id].version_id < version
                and states[feed.indexer_id].status is not IndexerStatus.VALID
            ):
                indexer_state.set_version(conn, feed.indexer_id, version)
        log.info("changelog.subscribed", feed=feed.name)


def set_mode(ctx: Context, feed: Feed, mode: IndexerMode) -> IndexerMode:
    """Switch an indexer's mode; returns the old mode.

    Both modes keep the changelog triggers: the changelog is what makes a realtime change durable
    when no listener is running. `realtime` adds the NOTIFY trigger (PostgreSQL), `schedule`
    removes it. The backlog carries over; only an indexer that had no triggers starts from now.
    """
    with ctx.db.connect() as conn:
        old = indexer_state.get_state(conn, feed.indexer_id).mode
    with ctx.source.connect() as src:
        tracked = changelog.is_subscribed(src, feed)
    version = changelog.subscribe(ctx.source, feed, notify=mode is IndexerMode.REALTIME)
    with ctx.db.begin() as conn:
        indexer_state.set_mode(conn, feed.indexer_id, mode, None if tracked else version)
    return old
