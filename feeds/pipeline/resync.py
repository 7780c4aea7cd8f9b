"""`saas:resync`: a full sync of one feed that also resends unchanged items, resumable after a crash.

A resync keeps a checkpoint (the last entity key whose batch was committed, and when the resync
started). `--continue-resync` starts after that key and skips items the destination accepted since
the start, so a kill -9 mid-batch costs a few resends at most, never a loss.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import column, select, table, update

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import Feed, Keys, Operation
from feeds.errors import FeedsyncError
from feeds.pipeline import ranges as resync_ranges
from feeds.pipeline.batch import process_batch
from feeds.pipeline.exporter import send_stored
from feeds.pipeline.indexer import Batch, BatchMapper, Progress, count_entities, reindex
from feeds.pipeline.run import (
    Outcome,
    Run,
    RunOptions,
    collect_only,
    locked_run,
    outcome_of,
)
from feeds.state import feed_items as store
from feeds.state.database import insert_for
from feeds.state.tables import checkpoints


@dataclass(frozen=True)
class ResyncRequest:
    """The options of `saas:resync` (SPEC §4)."""

    no_reindex: bool = False
    cleanup_feed: bool = False
    by_ids: tuple[str, ...] = ()
    dry_run: bool = False
    batch_size: int | None = None
    threads: int = 1
    continue_resync: bool = False
    fleet: bool = False  # fan the key ranges out to the Celery workers


@dataclass(frozen=True)
class Checkpoint:
    run_id: str
    started_at: datetime
    last_key: int | None


def checkpoint(ctx: Context, feed: Feed) -> Checkpoint | None:
    with ctx.db.connect() as conn:
        row = conn.execute(select(checkpoints).where(checkpoints.c.feed == feed.name)).first()
    return None if row is None else Checkpoint(row.run_id, row.started_at, row.last_key)


def check(ctx: Context, feed: Feed, request: ResyncRequest) -> None:
    """Refuse option combinations that cannot work, before any work, with one sentence."""
    if request.no_reindex and not collect_only(ctx, feed):
        raise FeedsyncError(
            f"--no-reindex resends the payloads kept in the feed table, which only legacy-mode feeds have; "
            f'feed {feed.name!r} is in immediate mode (set export_mode = "legacy" for it, or drop --no-reindex).'
        )
    if request.continue_resync and (request.cleanup_feed or request.by_ids or request.no_reindex):
        raise FeedsyncError(
            "--continue-resync resumes an interrupted full resync; it cannot be combined with --cleanup-feed, --by-ids or --no-reindex."
        )
    if request.continue_resync and checkpoint(ctx, feed) is None:
        raise FeedsyncError(
            f"There is no interrupted resync of feed {feed.name!r} to continue; start one with saas:resync --feed {feed.name}."
        )
    if request.fleet and (request.dry_run or request.by_ids or request.no_reindex):
        raise FeedsyncError(
            "--fleet spreads a full resync over the workers; it cannot be combined with --dry-run, --by-ids or --no-reindex."
        )
    if request.by_ids and (request.cleanup_feed or request.no_reindex):
        raise FeedsyncError(
            "--by-ids resends the items named; it cannot be combined with --cleanup-feed or --no-reindex."
        )
    if request.by_ids:
        entities_of(ctx, feed, request.by_ids)  # every id known, before any run


def parse_ids(text: str) -> tuple[str, ...]:
    """The item ids of `--by-ids`: comma-separated, none empty. FeedsyncError otherwise."""
    ids = tuple(part.strip() for part in text.split(","))
    if not any(ids):
        raise FeedsyncError(
            "--by-ids needs at least one item id; accepted: item ids separated by commas, such as --by-ids 12,13."
        )
    if not all(ids):
        raise FeedsyncError(
            f"--by-ids {text!r} has an empty id; accepted: item ids separated by commas, such as --by-ids 12,13."
        )
    return tuple(dict.fromkeys(ids))


def entities_of(ctx: Context, feed: Feed, ids: Sequence[str]) -> list[int]:
    """The entities of these item ids: from the feed table, or, for an id it does not hold, the
    source entity of that key. FeedsyncError naming the ids that are neither."""
    with ctx.db.connect() as conn:
        known = store.entity_keys(conn, feed.name, ids)
    keys = {i: int(i) for i in ids if i not in known and _is_key(i)}
    key = table(feed.key_table, column(feed.key_column)).c[feed.key_column]
    with ctx.source.connect() as src:
        existing = set(src.scalars(select(key).where(key.in_(list(keys.values())))))
    unknown = [i for i in ids if i not in known and keys.get(i) not in existing]
    if unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise FeedsyncError(
            f"Feed {feed.name!r} has no items with these ids: {shown}; "
            f"accepted: ids of its items (sync:errors lists those that failed)."
        )
    return sorted(set(known.values()) | {k for k in keys.values() if k in existing})


class IdType(StrEnum):
    """What the values of `--by-ids` are when `--id-type` says so (Adobe's `--id-type`)."""

    SKU = "sku"
    PRODUCT_ID = "productId"


def id_type_named(text: str) -> IdType:
    """`--id-type`, spelled as Adobe's documentation does (sku, productId, ProductID: any case)."""
    for id_type in IdType:
        if text.lower() == id_type.value.lower():
            return id_type
    raise FeedsyncError(
        f"--id-type {text!r} is not a type of id; accepted: sku or productId "
        "(without --id-type, --by-ids takes the feed's item ids)."
    )


_PRODUCTS = table("products", column("id"), column("sku"))


def product_keys(
    ctx: Context, feed: Feed, values: Sequence[str], id_type: IdType
) -> tuple[str, ...]:
    """The `--by-ids` values of `--id-type` as the feed's entity keys (product ids, as text).

    Only feeds whose entity is a product (keyed by the `products` table) take product SKUs or ids;
    FeedsyncError naming the values that are no product."""
    if feed.key_table != _PRODUCTS.name or feed.key_column != "id":
        raise FeedsyncError(
            f"--id-type {id_type.value} names products, and feed {feed.name!r} is keyed by "
            f"{feed.key_table}; accepted: --by-ids with its item ids, without --id-type."
        )
    if id_type is IdType.PRODUCT_ID:
        return tuple(values)  # entity keys already: entities_of checks that they exist
    found: dict[str, int] = {}
    with ctx.source.connect() as src:
        for start in range(0, len(values), 5000):
            part = list(values[start : start + 5000])
            found.update(
                src.execute(
                    select(_PRODUCTS.c.sku, _PRODUCTS.c.id).where(_PRODUCTS.c.sku.in_(part))
                ).all()
            )
    unknown = [v for v in values if v not in found]
    if unknown:
        shown = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise FeedsyncError(
            f"The source has no products with these SKUs: {shown}; accepted: product SKUs "
            "separated by commas, such as --by-ids SKU-1,SKU-2."
        )
    return tuple(dict.fromkeys(str(found[v]) for v in values))


def _is_key(text: str) -> bool:
    """Whether an id could be an entity key: a whole number the key column can hold."""
    return text.isdigit() and int(text) < 2**63


def total_entities(ctx: Context, feed: Feed, request: ResyncRequest) -> int:
    """How many entities the resync will walk (for a progress bar)."""
    return len(request.by_ids) if request.by_ids else count_entities(ctx, feed)


def resync(
    ctx: Context,
    feed: Feed,
    request: ResyncRequest,
    progress: Progress | None = None,
    mapper: BatchMapper | None = None,
) -> Outcome:
    """Run `saas:resync` for one feed. Raises LockedError when another process holds the feed.

    With `request.fleet`, `mapper` processes the planned key ranges elsewhere (the Celery workers).
    """
    check(ctx, feed, request)
    options = RunOptions(
        send=True,
        dry_run=request.dry_run,
        threads=request.threads,
        resend_all=True,
        batch_size=request.batch_size,
    )
    if request.dry_run:
        return _dry_run(ctx, feed, options, request, progress)
    if request.by_ids:
        with locked_run(ctx, feed, Operation.FULL_SYNC, options) as run:
            _by_ids(ctx, run, request.by_ids, progress)
        return outcome_of(run)
    if request.no_reindex:
        with locked_run(ctx, feed, Operation.FULL_SYNC, options) as run:
            send_stored(ctx, run, only_unsent=False)
        return outcome_of(run)
    if request.fleet:
        if mapper is None:
            raise FeedsyncError("A fleet resync needs the Celery workers (BROKER_URL).")
        return _fleet(ctx, feed, request, progress, mapper)
    start_after = None
    previous = checkpoint(ctx, feed) if request.continue_resync else None
    if previous is not None:
        start_after = previous.last_key
        options = RunOptions(
            send=True,
            threads=request.threads,
            resend_all=True,
            batch_size=request.batch_size,
            accepted_since=previous.started_at,
        )
    outcome = reindex(
        ctx,
        feed,
        progress=progress,
        options=options,
        start_after=start_after,
        after_batch=lambda batch: _save_checkpoint(ctx, feed, batch),
        on_start=lambda run: _start(ctx, feed, run, previous, request.cleanup_feed),
    )
    with ctx.db.begin() as conn:
        conn.execute(checkpoints.delete().where(checkpoints.c.feed == feed.name))
    return outcome


def _fleet(
    ctx: Context,
    feed: Feed,
    request: ResyncRequest,
    progress: Progress | None,
    mapper: BatchMapper,
) -> Outcome:
    """The same resync with the key ranges planned up front and processed by `mapper`, in any order."""
    previous = checkpoint(ctx, feed) if request.continue_resync else None
    options = RunOptions(
        send=True,
        threads=request.threads,
        resend_all=True,
        batch_size=request.batch_size,
        # Items accepted since the resync began are not resent, even by its first attempt: a
        # range delivered again after its worker died then resends only its round in flight.
        accepted_since=previous.started_at if previous else utcnow(),
    )
    if previous is None or not resync_ranges.planned(ctx, feed):
        # A new resync, or the continuation of one that ran without --fleet: plan from its checkpoint.
        resync_ranges.plan(ctx, feed, start_after=previous.last_key if previous else None)
    outcome = reindex(
        ctx,
        feed,
        progress=progress,
        options=options,
        batches=resync_ranges.pending(ctx, feed),
        mapper=mapper,
        on_start=lambda run: _start(ctx, feed, run, previous, request.cleanup_feed),
    )
    with ctx.db.begin() as conn:
        conn.execute(checkpoints.delete().where(checkpoints.c.feed == feed.name))
        resync_ranges.clear(conn, feed)
    return outcome


def _dry_run(
    ctx: Context, feed: Feed, options: RunOptions, request: ResyncRequest, progress: Progress | None
) -> Outcome:
    """Classify and count only: no lock, no run row, no feed-table write, nothing sent."""
    from feeds.pipeline.indexer import full_reindex
    from feeds.pipeline.run import new_run

    started = time.monotonic()
    run = new_run(ctx, feed, Operation.FULL_SYNC, RunOptions(dry_run=True, send=False))
    if request.by_ids:
        _by_ids(ctx, run, request.by_ids, progress)
    else:
        full_reindex(ctx, run, progress=progress)
    return Outcome(feed, run.counts, time.monotonic() - started, run_id=None)


def _by_ids(ctx: Context, run: Run, ids: tuple[str, ...], progress: Progress | None) -> None:
    """Rebuild and send the items named: their entities come from the feed table (or the id itself)."""
    ordered = entities_of(ctx, run.feed, ids)
    size = ctx.plan.feed(run.feed.name).collect_batch_size
    for start in range(0, len(ordered), size):
        process_batch(ctx, run, Keys(ids=tuple(ordered[start : start + size])), resend=set(ids))
        if progress is not None:
            progress(run.counts, min(start + size, len(ordered)))


def _start(
    ctx: Context, feed: Feed, run: Run, previous: Checkpoint | None, cleanup_feed: bool
) -> None:
    """Once the indexer lock is held: empty the feed table (`--cleanup-feed`), save the checkpoint.

    Not before the lock: a resync refused as locked must leave the feed table as it was."""
    if cleanup_feed:
        with ctx.db.begin() as conn:
            store.delete_feed_items(conn, feed.name)
    now = utcnow()
    values = {
        "feed": feed.name,
        "run_id": run.id,
        "started_at": previous.started_at if previous else now,
        "last_key": previous.last_key if previous else None,
        "updated_at": now,
    }
    with ctx.db.begin() as conn:
        insert = insert_for(conn.dialect.name, checkpoints)
        conn.execute(
            insert.values(**values).on_conflict_do_update(index_elements=["feed"], set_=values)
        )


def _save_checkpoint(ctx: Context, feed: Feed, batch: Batch) -> None:
    if batch.keys.hi is None:
        return
    with ctx.db.begin() as conn:
        conn.execute(
            update(checkpoints)
            .where(checkpoints.c.feed == feed.name)
            .values(last_key=batch.keys.hi, updated_at=utcnow())
        )


# --- resync of selected sync errors (the admin API and dashboard) ----------------------------
