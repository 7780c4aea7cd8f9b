"""Resync of selected sync errors (the dashboard's "Resync selected", `saas:resync --by-ids` of error rows): rebuild and resend those items, resolve what now succeeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select, update

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import Feed, Keys, Operation
from feeds.errors import FeedsyncError
from feeds.pipeline.batch import process_batch
from feeds.pipeline.run import (
    Run,
    RunOptions,
    locked_run,
)
from feeds.state import feed_items as store
from feeds.state.tables import sync_errors

log = structlog.get_logger("feeds.pipeline.resync_errors")

MAX_RESYNC_ERRORS = 100


LOCK_WAIT_S = 10.0


@dataclass
class ErrorResync:
    """What `resync_errors` did: a run per feed, and which selected errors it cleared."""

    run_ids: list[str] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    still_failing: list[int] = field(default_factory=list)


def resync_errors(
    ctx: Context, error_ids: Sequence[int], *, lock_wait_s: float = LOCK_WAIT_S
) -> ErrorResync:
    """Resend the items of the selected sync errors (at most 100), one `resync_errors` run per feed.

    Each item is rebuilt from the source and sent; an error whose item the destination accepted
    (or whose entity now builds, for an application error) is marked resolved. An item that fails
    again gets a new error row, which supersedes the selected one. Raises FeedsyncError for an
    empty or too long selection or unknown ids, LockedError when the feed stays locked.
    """
    wanted = list(dict.fromkeys(int(i) for i in error_ids))
    if not wanted:
        raise FeedsyncError("Select at least one sync error to resync.")
    if len(wanted) > MAX_RESYNC_ERRORS:
        raise FeedsyncError(
            f"At most {MAX_RESYNC_ERRORS} sync errors can be resynced per request; "
            f"{len(wanted)} were selected. Split the selection into requests of {MAX_RESYNC_ERRORS} or fewer."
        )
    # Ids outside the column's range cannot exist (and would overflow the driver): unknown.
    storable = [i for i in wanted if 0 < i < 2**63]
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(sync_errors.c.id, sync_errors.c.feed, sync_errors.c.item_id).where(
                sync_errors.c.id.in_(storable)
            )
        ).all()
    unknown = sorted(set(wanted) - {row.id for row in rows})
    if unknown:
        raise FeedsyncError(
            f"There are no sync errors with these ids: {', '.join(map(str, unknown[:10]))}"
            f"{' …' if len(unknown) > 10 else ''}."
        )
    by_feed: dict[str, dict[int, str]] = {}
    for row in rows:
        by_feed.setdefault(row.feed, {})[row.id] = row.item_id
    outcome = ErrorResync()
    for feed_name, selected in sorted(by_feed.items()):
        feed = ctx.registry.get(feed_name)
        with locked_run(
            ctx,
            feed,
            Operation.RESYNC_ERRORS,
            RunOptions(send=True),
            wait_s=lock_wait_s,
            busy=f"{feed.title} is being synced by another process; try the resync again in a minute.",
        ) as run:
            resent = _resend_items(ctx, run, tuple(sorted(set(selected.values()))))
        outcome.run_ids.append(run.id)
        with ctx.db.begin() as conn:
            failing = set(
                conn.scalars(
                    select(sync_errors.c.item_id).where(
                        sync_errors.c.run_id == run.id, sync_errors.c.feed == feed_name
                    )
                )
            )
            cleared = [
                i
                for i, item in selected.items()
                if item in resent and item not in failing and not run.delivery.config_error
            ]
            if cleared:
                conn.execute(
                    update(sync_errors)
                    .where(sync_errors.c.id.in_(cleared), sync_errors.c.resolved.is_(False))
                    .values(resolved=True, resolved_at=utcnow())
                )
                outcome.resolved.extend(cleared)
            outcome.still_failing.extend(i for i in selected if i not in cleared)
    outcome.resolved.sort()
    outcome.still_failing.sort()
    return outcome


def current_error_ids(ctx: Context, feed: Feed, category: str) -> list[int]:
    """The ids of the current (unresolved) errors of one category of `feed`, oldest first."""
    c = sync_errors.c
    with ctx.db.connect() as conn:
        return list(
            conn.scalars(
                select(c.id)
                .where(c.feed == feed.name, c.category == category, c.resolved.is_(False))
                .order_by(c.id)
            )
        )


def resync_category(
    ctx: Context, feed: Feed, category: str, *, lock_wait_s: float = LOCK_WAIT_S
) -> ErrorResync:
    """Resync every current error of one category of `feed`: `resync_errors` on chunks of
    MAX_RESYNC_ERRORS ids, one run per chunk, oldest errors first.

    The errors are those current when it starts: an item that fails again gets a new error row,
    which this does not chase (it would never end against a destination that keeps rejecting).
    """
    ids = current_error_ids(ctx, feed, category)
    if not ids:
        raise FeedsyncError(f"{feed.name} has no current {category} errors; nothing to resync.")
    outcome = ErrorResync()
    for start in range(0, len(ids), MAX_RESYNC_ERRORS):
        part = resync_errors(ctx, ids[start : start + MAX_RESYNC_ERRORS], lock_wait_s=lock_wait_s)
        outcome.run_ids.extend(part.run_ids)
        outcome.resolved.extend(part.resolved)
        outcome.still_failing.extend(part.still_failing)
        log.info(
            "resync_errors.chunk",
            feed=feed.name,
            category=category,
            done=min(start + MAX_RESYNC_ERRORS, len(ids)),
            of=len(ids),
        )
    return outcome


def _resend_items(ctx: Context, run: Run, item_ids: tuple[str, ...]) -> set[str]:
    """Rebuild and send these items; returns the ids it could resend.

    An id the feed table does not know names its entity (the error of a document that could not
    be built); any other unknown id (e.g. its row was cleaned up) cannot be rebuilt.
    """
    with ctx.db.connect() as conn:
        known = store.entity_keys(conn, run.feed.name, item_ids)
    by_entity = {i: int(i) for i in item_ids if i not in known and i.lstrip("-").isdigit()}
    entities = set(known.values()) | set(by_entity.values())
    if entities:
        process_batch(ctx, run, Keys(ids=tuple(sorted(entities))), resend=set(item_ids))
    return set(known) | set(by_entity)
