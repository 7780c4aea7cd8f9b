"""Letting the jobs converge after a fault, without waiting for wall-clock backoffs.

`time_passes` makes every pending retry due at once, as an hour of minutes would (and ends the
pause a destination asked for with a 429's Retry-After, as that hour would); `settle` runs the
minute jobs, as beat would, until a round finds nothing to do. Both change only the schedule of
what is already pending: they decide nothing a job would not decide by itself later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import IndexerStatus, ItemStatus
from feeds.state import indexer_state
from feeds.state.tables import items, pauses, rebuilds
from feeds.tracking import changelog
from worker.jobs import JobFailed, run_job

# The minute jobs, in the order an embedded runner or a fleet would start them within a minute.
MINUTE_JOBS = (
    "indexer_reindex_all_invalid",
    "indexer_update_all_views",
    "saas_data_exporter",
    "sales_data_exporter",
)


def time_passes(ctx: Context) -> None:
    """Every retry and rebuild waiting for its backoff is due now, and every destination pause over."""
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(update(items).where(items.c.next_attempt_at > now).values(next_attempt_at=now))
        conn.execute(
            update(rebuilds).where(rebuilds.c.next_attempt_at > now).values(next_attempt_at=now)
        )
        conn.execute(update(pauses).where(pauses.c.paused_until > now).values(paused_until=now))
    # A sender's memory of a pause only ever grows: open destinations are dropped, and the next
    # job's read the pause from the database, as a new worker process would.
    ctx.close_destinations()


@dataclass
class Settled:
    rounds: int  # rounds of jobs run, the quiet one included
    seconds: float
    failed_jobs: list[str] = field(default_factory=list)  # a job that failed in some round

    @property
    def converged(self) -> bool:
        return self.rounds > 0


def settle(ctx: Context, max_rounds: int = 30, pause_s: float = 0.0) -> Settled:
    """Run the minute jobs and every resend job, with time passing between rounds, until nothing
    is left that a job would do (`pending` is empty); `rounds` is 0 when `max_rounds` were not
    enough."""
    started = time.monotonic()
    jobs = [*MINUTE_JOBS, *(f"{feed}_feed_resend_failed_items" for feed in ctx.registry.names())]
    failed: list[str] = []
    for number in range(1, max_rounds + 1):
        for job in jobs:
            try:
                run_job(ctx, job)
            except JobFailed:
                failed.append(job)
        if not pending(ctx):
            return Settled(number, time.monotonic() - started, failed)
        time_passes(ctx)
        if pause_s:
            time.sleep(pause_s)
    return Settled(0, time.monotonic() - started, failed)


def pending(ctx: Context) -> dict[str, int]:
    """What a job would still do, per kind and feed: indexers to rebuild, changelog backlog, items
    to resend, entities to rebuild, legacy payloads to send. Empty once everything settled."""
    found: dict[str, int] = {}
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
        due: dict[str, int] = dict(
            conn.execute(
                select(items.c.feed, func.count())
                .where(
                    items.c.status.in_((int(ItemStatus.RETRYABLE), int(ItemStatus.SKIPPED))),
                    items.c.next_attempt_at.is_not(None),
                )
                .group_by(items.c.feed)
            ).all()
        )
        unsent: dict[str, int] = dict(
            conn.execute(
                select(items.c.feed, func.count())
                .where(items.c.status.is_(None), items.c.payload.is_not(None))
                .group_by(items.c.feed)
            ).all()
        )
        unbuilt: dict[str, int] = dict(
            conn.execute(
                select(rebuilds.c.feed, func.count())
                .where(rebuilds.c.next_attempt_at.is_not(None))
                .group_by(rebuilds.c.feed)
            ).all()
        )
    for feed in ctx.registry:
        state = states[feed.indexer_id]
        if state.status in (IndexerStatus.INVALID, IndexerStatus.WORKING):
            found[f"reindex {feed.name}"] = 1
        with ctx.source.connect() as src:
            backlog = changelog.backlog(src, feed, state.version_id)
        for kind, count in (
            ("backlog", backlog),
            ("resend", due.get(feed.name, 0)),
            ("legacy", unsent.get(feed.name, 0)),
            ("rebuild", unbuilt.get(feed.name, 0)),
        ):
            if count:
                found[f"{kind} {feed.name}"] = int(count)
    return found
