"""One batch: build the documents, compare them with the feed table, deliver, record each round."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import ItemStatus, Keys, StoredItem
from feeds.documents import Json
from feeds.errors import one_line
from feeds.export.protocol import ItemResult
from feeds.export.retry import next_attempt
from feeds.history import runs
from feeds.history.runs import Counts
from feeds.pipeline.build import _built_at_source, _usable_ids, build_documents
from feeds.pipeline.diff import Built, Change, Diff, FeedItem, canonical_items, compare
from feeds.pipeline.run import Run
from feeds.state import feed_items as store
from feeds.state.compare_built import compare_built, compare_statement
from feeds.state.feed_items import ItemRecord

log = structlog.get_logger("feeds.pipeline.batch")


def process_batch(
    ctx: Context,
    run: Run,
    keys: Keys,
    *,
    then: Callable[[Connection], None] | None = None,
    resend: Collection[str] = (),
) -> Counts:
    """Build, classify, deliver and record the entities in `keys`; `then` runs in the recording transaction."""
    compared = _compare(ctx, run, keys, resend)
    diff, stored, failures = compared.diff, compared.stored, compared.failures
    counts = Counts(
        new=diff.count(Change.NEW),
        updated=diff.count(Change.UPDATED),
        deleted=diff.count(Change.DELETED),
        skipped=diff.skipped + len(diff.restored),
        failed=len(failures.results),
        last_timestamp_synced=diff.newest_update,
    )
    run.counts += counts
    if run.options.dry_run:
        return counts
    _record_unsent(ctx, run, keys, compared.entities, failures, diff)
    if not run.options.send:
        counts += record_round(ctx, run, _collected(diff.changed), [], then)
        return counts
    previous = {
        i.id: stored[i.id].attempts
        for i in diff.changed
        if i.change is Change.RESENT and i.id in stored
    }
    # Record after each round of export batches, not once per collected batch: a process killed
    # mid-way then resends at most the round in flight. The pointer moves with the last round.
    rounds = _rounds(run, diff.changed) or [[]]
    for number, chunk in enumerate(rounds, start=1):
        run.renew_lock()  # the lock then only has to outlast one round's requests
        records, results = run.delivery.deliver(chunk, previous)
        counts += record_round(ctx, run, records, results, then if number == len(rounds) else None)
    return counts


@dataclass
class Compared:
    """A batch compared with the feed table: the diff, the stored rows it looked at, what could
    not be built or exported, and the entities that built."""

    diff: Diff
    stored: Mapping[str, StoredItem]
    failures: AppErrors
    entities: set[int]


def _compare(ctx: Context, run: Run, keys: Keys, resend: Collection[str]) -> Compared:
    """Where the documents are built and compared: a set-based feed on the worker database has
    the database do both, so unchanged items never reach Python; otherwise Python compares
    documents built by the source database (a query) or by a builder."""
    feed = run.feed
    if feed.query is not None and ctx.source is ctx.db:
        try:
            return _compare_in_database(ctx, run, keys, resend)
        except DBAPIError as exc:  # e.g. a value the query cannot render: entity by entity
            log.warning("compare.failed", feed=feed.name, error=one_line(exc), retry="in Python")
    with ctx.db.connect() as conn:
        stored = store.stored_items(conn, feed.name, keys)
    diff = Diff()
    built: list[Built] | None = None
    if feed.query is not None:
        built = _built_at_source(ctx, feed, keys)
    if built is not None:
        items, broken = _usable_ids(ctx, feed, keys, built, {}, stored)
    else:
        documents, broken = build_documents(ctx, feed, keys, stored)
        items = list(canonical_items(documents, diff))
    return _classified(ctx, run, keys, resend, diff, items, broken, stored)


def _compare_in_database(ctx: Context, run: Run, keys: Keys, resend: Collection[str]) -> Compared:
    feed = run.feed
    assert feed.query is not None
    with ctx.db.connect() as conn:
        statement = compare_statement(
            conn.dialect.name,
            feed.name,
            feed.query(keys, Json(conn.dialect.name)),
            keys,
            sending=run.options.send,
            resend=resend,
            resend_all=run.options.resend_all,
        )
        found = compare_built(conn, statement)
    stored = found.stored
    built = list(map(Built._make, found.built))
    items, broken = _usable_ids(ctx, feed, keys, built, {}, stored)
    diff = Diff(skipped=found.skipped, newest_update=found.newest_update)
    return _classified(ctx, run, keys, resend, diff, items, broken, stored)


def _classified(
    ctx: Context,
    run: Run,
    keys: Keys,
    resend: Collection[str],
    diff: Diff,
    items: list[Built],
    broken: dict[int, str],
    stored: Mapping[str, StoredItem],
) -> Compared:
    # Items of an entity that could not be built are not deletions: set them aside.
    held = {i: s for i, s in stored.items() if s.entity in broken}
    stored = {i: s for i, s in stored.items() if s.entity not in broken}
    if run.options.resend_all:
        resend = set(stored) | {b.id for b in items}
        if run.options.accepted_since is not None:
            with ctx.db.connect() as conn:
                resend -= store.accepted_since(
                    conn, run.feed.name, keys, run.options.accepted_since
                )
    diff = compare(items, stored, utcnow(), resend, sending=run.options.send, diff=diff)
    failures = AppErrors.of(broken, held, diff.unexportable, stored)
    entities = {b.entity for b in items} | {e for e, _ in diff.unexportable.values()}
    return Compared(diff, stored, failures, entities)


def record_round(
    ctx: Context,
    run: Run,
    records: Sequence[ItemRecord],
    results: Sequence[ItemResult],
    then: Callable[[Connection], None] | None = None,
) -> Counts:
    """Record one round in one transaction: the items' status, the run's errors and `then` (the
    changelog pointer, a range marked done); returns, and adds to the run, what the round sent."""
    run.renew_lock()
    with ctx.db.begin() as conn:
        store.record_items(conn, run.feed.name, records)
        runs.record_errors(conn, run.id, run.feed.name, results)
        if then is not None:
            then(conn)
    counts = tally(results)
    run.counts += counts
    run.committed_batches += 1
    return counts


@dataclass
class AppErrors:
    """What could not be built or exported in a batch (status 0): the items to record, an error per
    entity or item, and the entities to rebuild later."""

    records: list[ItemRecord] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    entities: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        broken: Mapping[int, str],
        held: Mapping[str, StoredItem],
        unexportable: Mapping[str, tuple[int, str]],
        stored: Mapping[str, StoredItem],
    ) -> AppErrors:
        """An error row per entity that could not be built (its items' ids are unknown) and per
        item whose document cannot be exported; their stored items keep their last hash."""
        errors = cls(entities=dict(broken))
        now = utcnow()
        for item_id, item in held.items():
            message = broken[item.entity]
            errors.records.append(
                _app_error(item_id, item.entity, item, BUILD_FAILED, message, now)
            )
        for entity, message in broken.items():
            errors.results.append(
                ItemResult(str(entity), ItemStatus.APP_ERROR, BUILD_FAILED, message)
            )
        for item_id, (entity, message) in unexportable.items():
            last = stored.get(item_id)
            errors.records.append(_app_error(item_id, entity, last, UNEXPORTABLE, message, now))
            errors.results.append(ItemResult(item_id, ItemStatus.APP_ERROR, UNEXPORTABLE, message))
            errors.entities.setdefault(entity, message)
        return errors


BUILD_FAILED = runs.BUILD_FAILED


UNEXPORTABLE = "UNEXPORTABLE_VALUE"  # the code of an item whose document JSON cannot carry


def _app_error(
    item_id: str, entity: int, stored: StoredItem | None, code: str, message: str, now: datetime
) -> ItemRecord:
    return ItemRecord(
        item_id,
        entity,
        stored.hash if stored else "",  # never built: no hash a rebuild could match
        stored.deleted if stored else False,
        now,
        ItemStatus.APP_ERROR,
        error_code=code,
        error_category="other",
        error_message=message,
        attempts=(stored.attempts if stored else 0) + 1,
    )


def _record_unsent(
    ctx: Context,
    run: Run,
    keys: Keys,
    built: set[int],
    errors: AppErrors,
    diff: Diff,
) -> None:
    """Record, before anything is sent, what needs no request: application errors (status 0, an
    error row, the entity queued for a rebuild with backoff), entities that now build (their
    rebuild done, their build errors resolved), and items the destination already holds (200)."""
    now = utcnow()
    feed = run.feed.name
    with ctx.db.begin() as conn:
        if errors.records:
            store.record_items(conn, feed, errors.records)
        if errors.results:
            runs.record_errors(conn, run.id, feed, errors.results)
        rebuilt = store.rebuilds_done(conn, feed, keys, failed=errors.entities)
        runs.resolve_build_failures(conn, feed, (built | rebuilt) - set(errors.entities))
        store.rebuilds_failed(
            conn,
            feed,
            errors.entities,
            lambda attempts: next_attempt(attempts, now, run.delivery.retry),
        )
        if diff.restored:
            store.record_items(conn, feed, [_sent(item) for item in diff.restored])
            runs.resolve(conn, feed, [item.id for item in diff.restored], now)
        if diff.rehashed:
            store.rehash(conn, feed, diff.rehashed)
    for entity, message in errors.entities.items():
        run.log.error("build.entity_failed", entity=entity, error=message)


def _rounds(run: Run, items: list[FeedItem]) -> list[list[FeedItem]]:
    """`items` in rounds of export batches: what the run sends before it records."""
    step = run.delivery.batch_size * max(1, run.delivery.threads)
    return [items[i : i + step] for i in range(0, len(items), step)]


def deliver_stored(
    ctx: Context, run: Run, items: list[FeedItem], attempts: dict[str, int]
) -> Counts:
    """Send items already in the feed table (legacy payloads) and record what the destination
    said, round by round as `process_batch` does: a killed process resends at most one round."""
    counts = Counts()
    for chunk in _rounds(run, items):
        run.renew_lock()
        records, results = run.delivery.deliver(chunk, attempts)
        counts += record_round(ctx, run, records, results)
    return counts


def tally(results: Sequence[ItemResult]) -> Counts:
    """Sent, failed and budget-deferred items among the destination's results."""
    sent = sum(1 for r in results if r.status is ItemStatus.SENT)
    deferred = sum(1 for r in results if r.status is ItemStatus.SKIPPED)
    rejected = sum(1 for r in results if r.status is ItemStatus.REJECTED)
    return Counts(
        rows_synced=sent,
        deferred=deferred,
        failed=len(results) - sent - deferred,
        rejected=rejected,
    )


def _sent(item: FeedItem) -> ItemRecord:
    return ItemRecord(
        item.id, item.entity, item.hash, item.deleted, item.modified_at, ItemStatus.SENT
    )


def _collected(changed: list[FeedItem]) -> list[ItemRecord]:
    """Legacy collection: the payload is kept, status NULL (never sent) until the exporter job sends it."""
    return [
        ItemRecord(i.id, i.entity, i.hash, i.deleted, i.modified_at, None, payload=i.body)
        for i in changed
    ]
