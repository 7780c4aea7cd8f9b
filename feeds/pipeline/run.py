"""A sync run and its batch pipeline: build → classify → deliver → record.

One batch goes: build documents (source) → classify against the feed table → send the changed
items (or keep their payload, legacy collection) → record them in the feed table with the run's
error rows, one transaction per round of export batches; the last one also advances the changelog
pointer. An item is recorded as sent only after the destination accepted it: a crash before the
commit means that round is sent again, never lost.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import structlog

from feeds.context import Context
from feeds.definitions import Feed, Operation, RunStatus
from feeds.errors import LockedError, one_line
from feeds.export import budget
from feeds.export.delivery import Delivery
from feeds.history import runs
from feeds.history.runs import Counts
from feeds.state import database
from feeds.state.locks import Lock, hold

log = structlog.get_logger("feeds.sync")


@dataclass(frozen=True)
class RunOptions:
    """How a run treats what it finds: picklable, so worker processes can share a run."""

    send: bool = True  # False: legacy collection, keep payloads for the exporter job
    dry_run: bool = False  # classify and count only: send nothing, write nothing
    threads: int = 1  # batches sent in parallel
    resend_all: bool = False  # a resync: send unchanged items too,
    accepted_since: datetime | None = None  # except those accepted since (a continued resync)
    batch_size: int | None = None  # export batch size for this run (default: the feed's)


@dataclass
class Run:
    """One sync run in progress."""

    id: str
    feed: Feed
    operation: Operation
    options: RunOptions
    delivery: Delivery
    counts: Counts = field(default_factory=Counts)
    committed_batches: int = 0
    lock: Lock | None = None  # the indexer lock the run holds, renewed before each recording
    started: float = field(default_factory=time.monotonic)
    status: RunStatus | None = None  # set when the run ends
    message: str | None = None  # why it ended as it did (config error, failure, budget pause)

    def renew_lock(self) -> None:
        """Renew before recording what was sent: one round may wait on the destination (timeout,
        Retry-After) long enough to outlast a lock renewed only per collected batch."""
        if self.lock is not None:
            self.lock.renew_if_due()

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        return log.bind(feed=self.feed.name, run_id=self.id, operation=self.operation.value)


def lock_name(feed: Feed) -> str:
    return f"indexer:{feed.indexer_id}"


class Skip(StrEnum):
    """Why a job left a feed alone: nothing failed, there was nothing it could do now."""

    LOCKED = "locked"  # another process holds the feed
    BUDGET = (
        "budget"  # the daily API-call budget is used up (the outcome's message says until when)
    )


@dataclass(frozen=True)
class Outcome:
    feed: Feed
    counts: Counts
    seconds: float
    skipped: Skip | None = None
    run_id: str | None = None
    status: RunStatus | None = None  # how the run ended (None: skipped, or a dry run)
    message: str | None = None  # why, when it did not succeed or was skipped

    @property
    def succeeded(self) -> bool:
        """The run happened and ended `success` or `partial` (some items failed, others synced)."""
        return self.skipped is None and self.status in SUCCEEDED

    @property
    def skipped_reason(self) -> str | None:
        """What a job summary prints after `skipped`: the budget's note, or the skip itself."""
        if self.skipped is None:
            return None
        return self.message or self.skipped.value


SUCCEEDED = (RunStatus.SUCCESS, RunStatus.PARTIAL)


def outcome_of(run: Run) -> Outcome:
    return Outcome(
        run.feed,
        run.counts,
        time.monotonic() - run.started,
        run_id=run.id,
        status=run.status,
        message=run.message,
    )


def skipped(feed: Feed, why: Skip, message: str | None = None) -> Outcome:
    return Outcome(feed, Counts(), 0.0, skipped=why, message=message)


class FeedBusy(LockedError):
    """Another process holds the feed's lock: raised before any run is recorded."""


def delivery_for(ctx: Context, feed: Feed, options: RunOptions) -> Delivery:
    destination = ctx.destination(feed)
    return Delivery(
        destination=destination,
        feed=feed.name,
        batch_size=options.batch_size or ctx.plan.feed(feed.name).batch_size,
        retry=ctx.plan.retry,
        keep_payload=collect_only(ctx, feed),
        threads=options.threads,
        gate=budget.gate_for(ctx, destination.name),
    )


def collect_only(ctx: Context, feed: Feed) -> bool:
    """Legacy export mode: collection keeps payloads; `saas_data_exporter` sends them later."""
    return ctx.plan.feed(feed.name).collect_only


def new_run(
    ctx: Context, feed: Feed, operation: Operation, options: RunOptions, run_id: str | None = None
) -> Run:
    return Run(
        run_id or uuid.uuid4().hex, feed, operation, options, delivery_for(ctx, feed, options)
    )


@contextmanager
def open_run(
    ctx: Context,
    feed: Feed,
    operation: Operation,
    options: RunOptions | None = None,
    *,
    lock: Lock,
) -> Iterator[Run]:
    """Record a sync run around the block, held under the feed's `lock`: `running`, then its final
    status and counters (also left on `run.status` and `run.message`).

    A run that raises ends `rolled_back` when no batch was committed (the feed table is as it was),
    `error` otherwise. A dry run records nothing.
    """
    run = new_run(ctx, feed, operation, options or RunOptions())
    run.lock = lock
    if run.options.dry_run:
        yield run
        run.status = runs.status_for(run.counts)
        return
    runs.start_run(ctx.db, run.id, feed.name, operation, lock.owner)
    label = " (legacy)" if collect_only(ctx, feed) else ""
    run.log.info(f"run.started{label}")
    try:
        yield run
    except BaseException as exc:
        status = RunStatus.ROLLED_BACK if run.committed_batches == 0 else RunStatus.ERROR
        run.status, run.message = status, one_line(exc)[:2000]
        # The failure may be the database's own (a restart): record how the run ended once it is
        # back, while the lock is still ours, rather than leave the run `running`.
        database.while_unreachable(
            lambda: runs.finish_run(ctx.db, run.id, run.counts, status, message=run.message),
            until=lock.valid_until,
            what=f"the end of run {run.id}",
        )
        run.log.error(
            f"run.failed{label}", status=run.status.value, error=str(exc), **run.counts.as_dict()
        )
        raise
    run.status = runs.status_for(run.counts, run.delivery.config_error)
    run.message = run.delivery.config_error
    if run.status is RunStatus.ERROR:
        run.message = runs.failure_note(ctx.db, run.id, run.counts.failed)
    if run.counts.deferred and not run.delivery.config_error:
        # From the counts, not the delivery: with several processes, theirs paused, not ours.
        run.message = budget.paused_note(ctx, run.delivery.destination.name, run.counts.deferred)
        run.log.warning(f"run.paused{label}", reason=run.message, deferred=run.counts.deferred)
    runs.finish_run(ctx.db, run.id, run.counts, run.status, message=run.message)
    run.log.info(
        f"run.finished{label}",
        status=run.status.value,
        rows_synced=run.counts.rows_synced,
        calls=run.delivery.calls,
        deferred=run.counts.deferred,
        **run.counts.as_dict(),
    )


@contextmanager
def feed_lock(
    ctx: Context, feed: Feed, *, wait_s: float = 0.0, busy: str | None = None
) -> Iterator[Lock]:
    """Hold the feed's lock for the block: one process at a time syncs, resends or rebuilds a feed.

    Waits up to `wait_s` for it (a partial sync holds it for seconds), then raises FeedBusy.
    """
    refusal = FeedBusy(busy or f"{feed.title} index is locked by another reindex process.")
    with hold(ctx.db, lock_name(feed), wait_s=wait_s, busy=refusal) as lock:
        yield lock


@contextmanager
def locked_run(
    ctx: Context,
    feed: Feed,
    operation: Operation,
    options: RunOptions | None = None,
    *,
    wait_s: float = 0.0,
    busy: str | None = None,
) -> Iterator[Run]:
    """The one run choreography: hold the feed's lock, record a run around the block (the run
    renews the lock before each recording), end the run, release. FeedBusy when it is held."""
    with (
        feed_lock(ctx, feed, wait_s=wait_s, busy=busy) as lock,
        open_run(ctx, feed, operation, options, lock=lock) as run,
    ):
        yield run
