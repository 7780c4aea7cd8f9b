"""Sending what collection left behind: legacy payloads (`saas_data_exporter`, `sales_data_exporter`)
and retryable failures whose next attempt is due (`<feed>_feed_resend_failed_items`).

Both hold the feed's indexer lock, so a collection run never rewrites an item while it is sent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import select

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import Feed, ItemStatus, Keys, Operation
from feeds.export import budget
from feeds.pipeline import stopping
from feeds.pipeline.batch import deliver_stored, process_batch
from feeds.pipeline.diff import Change, FeedItem
from feeds.pipeline.run import (
    FeedBusy,
    Outcome,
    Run,
    Skip,
    collect_only,
    locked_run,
    outcome_of,
    skipped,
)
from feeds.state import feed_items as store
from feeds.state.tables import items

log = structlog.get_logger("feeds.exporter")


def export_pending(ctx: Context, feed: Feed) -> Outcome | None:
    """Send the collected-but-never-sent items of a legacy-mode feed; None when there are none."""
    if not collect_only(ctx, feed) or not _has_pending(ctx, feed):
        return None
    if (paused := _budget_paused(ctx, feed, Operation.LEGACY_EXPORT)) is not None:
        return paused
    return _locked(
        ctx, feed, Operation.LEGACY_EXPORT, functools.partial(send_stored, only_unsent=True)
    )


def resend_failed(ctx: Context, feed: Feed) -> Outcome | None:
    """Resend the items whose last send failed with a retryable error, or that the API-call budget
    held back, and rebuild the entities that could not be built, when their next attempt is due."""
    if not _due_ids(ctx, feed, limit=1) and not _due_rebuilds(ctx, feed, limit=1):
        return None
    if (paused := _budget_paused(ctx, feed, Operation.RESEND_FAILED)) is not None:
        return paused
    return _locked(ctx, feed, Operation.RESEND_FAILED, _resend_due)


def _budget_paused(ctx: Context, feed: Feed, operation: Operation) -> Outcome | None:
    """While the API-call budget is used up, a sending job records no run: there is nothing it could do."""
    reason = budget.exhausted(ctx, feed)
    if reason is None:
        return None
    log.info("export.skipped", feed=feed.name, operation=operation.value, reason=reason)
    return skipped(feed, Skip.BUDGET, reason)


def _locked(
    ctx: Context, feed: Feed, operation: Operation, work: Callable[[Context, Run], None]
) -> Outcome:
    try:
        with locked_run(ctx, feed, operation) as run:
            work(ctx, run)
    except FeedBusy:
        log.info(
            "export.skipped",
            feed=feed.name,
            operation=operation.value,
            reason="locked by another process",
        )
        return skipped(feed, Skip.LOCKED)
    return outcome_of(run)


def _has_pending(ctx: Context, feed: Feed) -> bool:
    with ctx.db.connect() as conn:
        return conn.scalar(select(items.c.id).where(*_pending(feed)).limit(1)) is not None


def _pending(feed: Feed, only_unsent: bool = True) -> tuple:  # type: ignore[type-arg]
    unsent = (items.c.status.is_(None),) if only_unsent else ()
    return (items.c.feed == feed.name, items.c.payload.is_not(None), *unsent)


def send_stored(ctx: Context, run: Run, only_unsent: bool) -> None:
    """Send the payloads the feed table holds (legacy mode): the never-sent ones, or all of them."""
    c = items.c
    size = ctx.plan.feed(feed_name := run.feed.name).collect_batch_size
    last = ""
    while True:
        with ctx.db.connect() as conn:
            rows = conn.execute(
                select(c.id, c.entity_key, c.deleted, c.modified_at, c.hash, c.payload, c.attempts)
                .where(*_pending(run.feed, only_unsent), c.id > last)
                .order_by(c.id)
                .limit(size)
            ).all()
        if not rows:
            return
        batch = [
            FeedItem(
                r.id, r.entity_key, bool(r.deleted), r.modified_at, r.hash, r.payload, Change.RESENT
            )
            for r in rows
        ]
        deliver_stored(ctx, run, batch, {r.id: r.attempts for r in rows})
        last = rows[-1].id
        run.renew_lock()
        log.debug("legacy_export.batch", feed=feed_name, items=len(rows))
        if run.delivery.paused:
            return  # the API-call budget is used up: the rest stays unsent for a later run
        stopping.check()  # warm shutdown: what was sent is recorded, the rest goes next run


def _due_ids(
    ctx: Context, feed: Feed, limit: int, due_by: datetime | None = None
) -> list[tuple[str, int]]:
    c = items.c
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(c.id, c.entity_key)
            .where(
                c.feed == feed.name,
                c.status.in_((int(ItemStatus.RETRYABLE), int(ItemStatus.SKIPPED))),
                c.next_attempt_at <= (due_by or utcnow()),
            )
            .order_by(c.next_attempt_at)
            .limit(limit)
        ).all()
    return [(r[0], r[1]) for r in rows]


def _due_rebuilds(
    ctx: Context, feed: Feed, limit: int, due_by: datetime | None = None
) -> list[int]:
    with ctx.db.connect() as conn:
        return store.due_rebuilds(conn, feed.name, due_by or utcnow(), limit)


def _resend_due(ctx: Context, run: Run) -> None:
    """Rebuild the due items from the source (their current state, not a stale copy) and send them."""
    size = ctx.plan.feed(run.feed.name).collect_batch_size
    # Only what was due when the run started: an item that fails again waits for a later run.
    started = utcnow()
    while (due := _due_ids(ctx, run.feed, size, started)) or (
        rebuild := _due_rebuilds(ctx, run.feed, size, started)
    ):
        ids = {item_id for item_id, _ in due}
        entities = {entity for _, entity in due} if due else set(rebuild)
        process_batch(ctx, run, Keys(ids=tuple(sorted(entities))), resend=ids)
        run.renew_lock()
        if run.delivery.config_error or run.delivery.paused:
            return  # nothing more can be sent in this run; the rest stays due
        stopping.check()
