"""Indexers: build a feed from the source, diff it with the feed table, export what changed.

One batch goes: build documents (source) → classify against the feed table → export the changed
items → record them in the feed table, in one worker-database transaction that also advances the
changelog pointer. An item is recorded as sent only after the destination accepted it; a crash
before the commit means the batch is done again (and resent), never lost.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import structlog
from sqlalchemy import column, func, select, table
from sqlalchemy.engine import Connection

from config.settings import ExportMode, IndexerMode
from feeds import changelog, parallel, store
from feeds.context import Context
from feeds.definitions import Feed, Keys
from feeds.diff import Change, FeedItem, classify
from feeds.export import ItemResult
from feeds.locks import Lock, LockedError, is_locked
from feeds.store import IndexerStatus, ItemRecord, ItemStatus, utcnow

log = structlog.get_logger("feeds.indexer")


@dataclass
class Counts:
    """What one operation did, item by item."""

    new: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def items(self) -> int:
        return self.new + self.updated + self.deleted + self.skipped

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


Progress = Callable[[Counts], None]


def lock_name(feed: Feed) -> str:
    return f"indexer:{feed.indexer_id}"


def process_batch(
    ctx: Context,
    feed: Feed,
    keys: Keys,
    *,
    then: Callable[[Connection], None] | None = None,
) -> Counts:
    """Build, diff, export and record the entities in `keys`; `then` runs in the recording transaction."""
    with ctx.source.connect() as src:
        documents = list(feed.build(src, keys))
    with ctx.db.connect() as conn:
        stored = store.stored_items(conn, feed.name, keys)
    diff = classify(documents, stored, utcnow())
    records, failed = _export(ctx, feed, diff.changed)
    with ctx.db.begin() as conn:
        store.record_items(conn, feed.name, records)
        if then is not None:
            then(conn)
    return Counts(
        new=diff.count(Change.NEW),
        updated=diff.count(Change.UPDATED),
        deleted=diff.count(Change.DELETED),
        skipped=diff.skipped,
        failed=failed,
    )


def _export(ctx: Context, feed: Feed, changed: list[FeedItem]) -> tuple[list[ItemRecord], int]:
    """Send the changed items in batches (immediate mode) or keep their payload for the exporter job (legacy)."""
    if not changed:
        return [], 0
    if ctx.settings.feed(feed.name).export_mode is ExportMode.LEGACY:
        return [
            ItemRecord(i.id, i.entity, i.hash, i.deleted, i.modified_at, None, payload=i.body)
            for i in changed
        ], 0
    destination = ctx.destination(feed)
    size = ctx.settings.batch_size(feed.name)
    results: dict[str, ItemResult] = {}
    for start in range(0, len(changed), size):
        results.update(
            (r.id, r) for r in destination.send(feed.name, changed[start : start + size])
        )
    records = []
    for item in changed:
        result = results.get(item.id) or ItemResult(
            item.id, ItemStatus.RETRYABLE, None, "missing from the destination's answer"
        )
        records.append(
            ItemRecord(
                item.id,
                item.entity,
                item.hash,
                item.deleted,
                item.modified_at,
                result.status,
                error_code=result.code,
                error_message=result.message,
            )
        )
    failed = sum(1 for r in records if r.status is not ItemStatus.SENT)
    return records, failed


def entity_batches(ctx: Context, feed: Feed, batch_size: int) -> Iterator[Keys]:
    """Key ranges covering the whole driving table, then everything past its last key (deleted tail)."""
    key = table(feed.key_table, column(feed.key_column)).c[feed.key_column]
    last: int | None = None
    while True:
        query = select(key).order_by(key).limit(batch_size)
        if last is not None:
            query = query.where(key > last)
        with ctx.source.connect() as conn:
            batch = conn.scalars(query).all()
        if not batch:
            yield Keys(lo=last)
            return
        yield Keys(lo=last, hi=batch[-1])
        last = batch[-1]


def count_entities(ctx: Context, feed: Feed) -> int:
    with ctx.source.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table(feed.key_table))) or 0)


def full_reindex(
    ctx: Context, feed: Feed, *, progress: Progress | None = None, lock: Lock | None = None
) -> Counts:
    """Rebuild the whole feed: every entity of the source, and deletes for entities gone from it."""
    counts = Counts()
    batches = entity_batches(ctx, feed, ctx.settings.feed(feed.name).collect_batch_size)
    processes = reindex_processes(ctx, feed)
    if processes > 1:
        done: Iterator[Counts] = parallel.map_batches(ctx.settings, feed.name, batches, processes)
    else:
        done = (process_batch(ctx, feed, keys) for keys in batches)
    for batch_counts in done:
        counts += batch_counts
        if lock is not None:
            lock.renew()
        if progress is not None:
            progress(counts)
    return counts


def reindex_processes(ctx: Context, feed: Feed) -> int:
    """How many processes share a full reindex: configured, or one per core for a large feed."""
    configured = ctx.settings.feed(feed.name).reindex_processes
    if configured is not None:
        return configured
    cores = min(os.cpu_count() or 1, 4)
    if (
        cores == 1
        or count_entities(ctx, feed) < 5 * ctx.settings.feed(feed.name).collect_batch_size
    ):
        return 1  # starting processes costs more than it saves on a small feed
    return cores


def partial_reindex(ctx: Context, feed: Feed, *, lock: Lock | None = None) -> Counts:
    """Rebuild the entities recorded in the changelog after the saved version, chunk by chunk."""
    with ctx.db.connect() as conn:
        after = store.get_state(conn, feed.indexer_id).version_id
    with ctx.source.connect() as src:
        upto = changelog.current_version(src, feed)
    counts = Counts()
    chunk_size = ctx.settings.feed(feed.name).collect_batch_size
    while after < upto:
        with ctx.source.connect() as src:
            chunk = changelog.read(src, feed, after, upto, chunk_size)
        if chunk is None:
            break
        # The pointer moves in the same transaction as the feed rows: done work and pointer agree.
        advance = functools.partial(_advance, indexer_id=feed.indexer_id, version=chunk.to_version)
        counts += process_batch(ctx, feed, Keys(ids=chunk.entity_ids), then=advance)
        after = chunk.to_version
        if lock is not None:
            lock.renew()
    return counts


def _advance(conn: Connection, *, indexer_id: str, version: int) -> None:
    store.set_version(conn, indexer_id, version)


@dataclass(frozen=True)
class Outcome:
    feed: Feed
    counts: Counts
    seconds: float
    skipped_reason: str | None = None


def reindex(ctx: Context, feed: Feed, *, progress: Progress | None = None) -> Outcome:
    """`indexer:reindex` for one feed: hold its lock, mark it working, rebuild, mark it valid.

    Raises LockedError when another process holds the indexer.
    """
    run_id = uuid.uuid4().hex[:12]
    bound = log.bind(feed=feed.name, run_id=run_id, operation="full_sync")
    started = time.monotonic()
    lock = Lock(ctx.db, lock_name(feed))
    if not lock.acquire():
        raise LockedError(f"{feed.title} index is locked by another reindex process.")
    try:
        with ctx.db.begin() as conn:
            state = store.get_state(conn, feed.indexer_id)
            store.set_status(conn, feed.indexer_id, IndexerStatus.WORKING)
        version = 0
        if state.mode is IndexerMode.SCHEDULE:
            # Changes logged before the rebuild starts are covered by it.
            with ctx.source.connect() as src:
                version = changelog.current_version(src, feed)
        bound.info("reindex.started")
        try:
            counts = full_reindex(ctx, feed, progress=progress, lock=lock)
        except BaseException:
            with ctx.db.begin() as conn:
                store.set_status(conn, feed.indexer_id, IndexerStatus.INVALID)
            bound.exception("reindex.failed")
            raise
        with ctx.db.begin() as conn:
            current = store.get_state(conn, feed.indexer_id)
            store.set_status(
                conn,
                feed.indexer_id,
                IndexerStatus.SUSPENDED
                if current.status is IndexerStatus.SUSPENDED
                else IndexerStatus.VALID,
            )
            if version > current.version_id:
                store.set_version(conn, feed.indexer_id, version)
    finally:
        lock.release()
    seconds = time.monotonic() - started
    bound.info("reindex.finished", seconds=round(seconds, 3), **counts.as_dict())
    return Outcome(feed, counts, seconds)


def update_view(ctx: Context, feed: Feed) -> Outcome | None:
    """Partial sync of one schedule-mode indexer from its changelog; None when it is not due."""
    with ctx.db.connect() as conn:
        state = store.get_state(conn, feed.indexer_id)
    if state.mode is not IndexerMode.SCHEDULE or state.status is not IndexerStatus.VALID:
        return None
    bound = log.bind(feed=feed.name, run_id=uuid.uuid4().hex[:12], operation="partial_sync")
    lock = Lock(ctx.db, lock_name(feed))
    if not lock.acquire():
        bound.info("partial_sync.skipped", reason="locked")
        return Outcome(feed, Counts(), 0.0, "locked")
    started = time.monotonic()
    try:
        counts = partial_reindex(ctx, feed, lock=lock)
    finally:
        lock.release()
    seconds = time.monotonic() - started
    if counts.items or counts.failed:
        bound.info("partial_sync.finished", seconds=round(seconds, 3), **counts.as_dict())
    return Outcome(feed, counts, seconds)


def update_all_views(ctx: Context) -> list[Outcome]:
    """`indexer_update_all_views`: partial sync of every schedule-mode indexer with a backlog."""
    ensure_subscriptions(ctx)
    return [outcome for feed in ctx.registry if (outcome := update_view(ctx, feed)) is not None]


def reindex_all_invalid(ctx: Context) -> list[Outcome]:
    """`indexer_reindex_all_invalid`: full reindex of every invalid indexer (and of one left `working` by a dead process)."""
    ensure_subscriptions(ctx)
    outcomes = []
    with ctx.db.connect() as conn:
        states = store.all_states(conn)
    for feed in ctx.registry:
        status = states[feed.indexer_id].status
        stale = status is IndexerStatus.WORKING and not is_locked(ctx.db, lock_name(feed))
        if status is not IndexerStatus.INVALID and not stale:
            continue
        try:
            outcomes.append(reindex(ctx, feed))
        except LockedError:
            log.info("reindex.skipped", feed=feed.name, reason="locked")
            outcomes.append(Outcome(feed, Counts(), 0.0, "locked"))
    return outcomes


def clean_all_changelogs(ctx: Context) -> dict[str, int]:
    """`indexer_clean_all_changelogs`: delete processed changelog rows (the newest processed one stays)."""
    with ctx.db.connect() as conn:
        states = store.all_states(conn)
    removed = {
        feed.name: changelog.clean(ctx.source, feed, states[feed.indexer_id].version_id)
        for feed in ctx.registry
    }
    log.info("changelogs.cleaned", removed=sum(removed.values()))
    return removed


def ensure_subscriptions(ctx: Context) -> None:
    """Install the triggers of schedule-mode indexers that lack them (e.g. source tables created since)."""
    with ctx.db.connect() as conn:
        states = store.all_states(conn)
    for feed in ctx.registry:
        if states[feed.indexer_id].mode is not IndexerMode.SCHEDULE:
            continue
        with ctx.source.connect() as src:
            if changelog.is_subscribed(src, feed) or changelog.missing_tables(src, feed):
                continue
        version = changelog.subscribe(ctx.source, feed)
        with ctx.db.begin() as conn:
            if (
                states[feed.indexer_id].version_id < version
                and states[feed.indexer_id].status is not IndexerStatus.VALID
            ):
                store.set_version(conn, feed.indexer_id, version)
        log.info("changelog.subscribed", feed=feed.name)


def set_mode(ctx: Context, feed: Feed, mode: IndexerMode) -> IndexerMode:
    """Switch an indexer's mode: `schedule` installs the triggers, `realtime` removes them. Returns the old mode."""
    with ctx.db.connect() as conn:
        old = store.get_state(conn, feed.indexer_id).mode
    if mode is IndexerMode.SCHEDULE:
        version = changelog.subscribe(ctx.source, feed)
        with ctx.db.begin() as conn:
            # Changes made while in realtime mode were not logged; start from now.
            store.set_mode(conn, feed.indexer_id, mode, version if old is not mode else None)
    else:
        changelog.unsubscribe(ctx.source, feed)
        with ctx.db.begin() as conn:
            store.set_mode(conn, feed.indexer_id, mode)
    return old
