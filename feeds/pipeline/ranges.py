"""The key ranges of a fan-out resync (`saas:resync --fleet`) and which of them are done.

The coordinator plans the feed's key ranges once and stores them; workers process ranges in any
order, each marking its range done in the transaction that records its items. A continued resync
sends only the ranges not done, whatever order they finished in.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import Feed, Keys, Operation
from feeds.history.runs import Counts
from feeds.pipeline.batch import process_batch
from feeds.pipeline.indexer import Batch, entity_batches
from feeds.pipeline.run import Run, RunOptions, new_run
from feeds.state.tables import ranges

_INSERT_ROWS = 1000


def plan(ctx: Context, feed: Feed, start_after: int | None = None) -> int:
    """Store the feed's key ranges (after `start_after`), replacing any earlier plan; returns how many."""
    size = ctx.plan.feed(feed.name).collect_batch_size
    with ctx.db.begin() as conn:
        clear(conn, feed)
        rows: list[dict[str, Any]] = []
        count = 0
        for seq, batch in enumerate(entity_batches(ctx, feed, size, start_after)):
            rows.append(
                {
                    "feed": feed.name,
                    "seq": seq,
                    "lo": batch.keys.lo,
                    "hi": batch.keys.hi,
                    "entities": batch.entities,
                }
            )
            count += 1
            if len(rows) >= _INSERT_ROWS:
                conn.execute(ranges.insert(), rows)
                rows = []
        if rows:
            conn.execute(ranges.insert(), rows)
    return count


def planned(ctx: Context, feed: Feed) -> bool:
    with ctx.db.connect() as conn:
        return bool(
            conn.scalar(select(func.count()).select_from(ranges).where(ranges.c.feed == feed.name))
        )


def pending(ctx: Context, feed: Feed) -> list[Batch]:
    """The planned ranges not done yet, in key order."""
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(ranges.c.seq, ranges.c.lo, ranges.c.hi, ranges.c.entities)
            .where(ranges.c.feed == feed.name, ranges.c.done_at.is_(None))
            .order_by(ranges.c.seq)
        ).all()
    return [Batch(Keys(lo=r.lo, hi=r.hi), r.entities, seq=r.seq) for r in rows]


def clear(conn: Connection, feed: Feed) -> None:
    conn.execute(ranges.delete().where(ranges.c.feed == feed.name))


def process_range(ctx: Context, run: Run, batch: Batch) -> Counts:
    """Build, send and record one range; it is marked done in the transaction recording its items."""
    feed, seq = run.feed.name, batch.seq

    def done(conn: Connection) -> None:
        conn.execute(
            update(ranges)
            .where(ranges.c.feed == feed, ranges.c.seq == seq)
            .values(done_at=utcnow())
        )

    return process_batch(ctx, run, batch.keys, then=done)


def range_run(ctx: Context, feed: str, run_id: str, operation: str, options: dict[str, Any]) -> Run:
    """The coordinator's run, as a worker process sees it (its own delivery, the same run id)."""
    return new_run(ctx, ctx.registry.get(feed), Operation(operation), options_from(options), run_id)


# -- what travels in task messages (JSON) --------------------------------------------------------


def options_dict(options: RunOptions) -> dict[str, Any]:
    values = asdict(options)
    if options.accepted_since is not None:
        values["accepted_since"] = options.accepted_since.isoformat()
    return values


def options_from(values: dict[str, Any]) -> RunOptions:
    since = values.get("accepted_since")
    return RunOptions(
        **{**values, "accepted_since": datetime.fromisoformat(since) if since else None}
    )


def counts_dict(counts: Counts) -> dict[str, Any]:
    values: dict[str, Any] = {f.name: getattr(counts, f.name) for f in fields(counts)}
    if counts.last_timestamp_synced is not None:
        values["last_timestamp_synced"] = counts.last_timestamp_synced.isoformat()
    return values


def counts_from(values: dict[str, Any]) -> Counts:
    stamp = values.get("last_timestamp_synced")
    return Counts(
        **{**values, "last_timestamp_synced": datetime.fromisoformat(stamp) if stamp else None}
    )
