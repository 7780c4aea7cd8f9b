"""Syncs requested through the API (`POST /cdi/integrations/{id}/sync`): the request lock, the
sync itself, and the two triggers that run it.

The API takes its trigger as a parameter (`create_app(trigger=...)`) and knows nothing of Celery:
`trigger_for(settings)` picks `FleetSync` when a broker is configured (`BROKER_URL`: a Celery task
any worker runs, which ends failed when the sync fails), else `BackgroundSync` (a thread of the API
process). A trigger either accepts the sync or raises `LockedError` when that feed already has a
job in progress (answered `429 Another job is in progress`).

What is synced is a `RequestedSync`: a reindex (the default: sends what changed), a full resync
(`saas:resync --feed`: resends every item), or the resync of every current error of one category
of the feed (the dashboard's operator actions), each under the same request lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog

from config.settings import Settings
from feeds.context import Context
from feeds.definitions import Feed, RunStatus
from feeds.errors import FeedsyncError, LockedError
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.pipeline.resync import ResyncRequest, resync
from feeds.pipeline.resync_errors import resync_category
from feeds.pipeline.run import lock_name
from feeds.state.locks import Lock, is_locked

log = structlog.get_logger("worker.sync_requests")


class SyncKind(StrEnum):
    REINDEX = "reindex"  # indexer:reindex: rebuild, send what changed
    RESYNC = "resync"  # saas:resync --feed: rebuild, resend every item
    RESYNC_ERRORS = "resync_errors"  # every current error of one category, 100 per run


@dataclass(frozen=True)
class RequestedSync:
    kind: SyncKind = SyncKind.REINDEX
    category: str | None = None  # RESYNC_ERRORS only


REINDEX = RequestedSync()
WORDS = {
    SyncKind.REINDEX: "sync",
    SyncKind.RESYNC: "full resync",
    SyncKind.RESYNC_ERRORS: "resync of errors",
}


class SyncTrigger(Protocol):
    """Runs a requested sync of `feed` elsewhere (a thread, a worker); LockedError when it is held."""

    def __call__(self, ctx: Context, feed: Feed, job: RequestedSync = REINDEX) -> None: ...


# Held from the request until the background sync ends (or its TTL passes, if the process dies):
# two requests, in one API process or several, cannot both start a sync of the same feed.
REQUEST_LOCK_TTL_S = 120.0
INTEGRATION_SYNC_TASK = "feedsync.integration_sync"


def request_lock_name(feed: Feed) -> str:
    return f"api_sync:{feed.indexer_id}"


def take_request_lock(ctx: Context, feed: Feed) -> Lock:
    """The request lock of `feed`, or LockedError when a sync of it is requested or running."""
    request = Lock(ctx.db, request_lock_name(feed), ttl_s=REQUEST_LOCK_TTL_S)
    if not request.acquire():
        raise LockedError(f"A sync of {feed.name} was already requested.")
    if is_locked(ctx.db, lock_name(feed)):
        request.release()
        raise LockedError(f"{feed.title} index is locked by another process.")
    return request


class RequestedSyncFailed(FeedsyncError):
    """A requested sync ran to its end but did not sync: its run ended `error` or `config_error`."""


def run_requested_sync(
    ctx: Context, feed: Feed, request: Lock, job: RequestedSync = REINDEX
) -> list[str] | None:
    """The requested sync itself (in an API thread or a fleet worker); frees the request lock and
    returns the ids of the runs it made.

    None when another process holds the feed. A sync that failed raises (once the request lock is
    freed): its own exception, or RequestedSyncFailed when a run ended `error` or `config_error`.
    """
    try:
        run_ids = _run(ctx, feed, job)
    except LockedError:
        log.info("api.sync_skipped", feed=feed.name, kind=job.kind.value, reason="locked")
        return None
    finally:
        request.release()
    with ctx.db.connect() as conn:
        runs = read_model.runs_by_ids(conn, run_ids)
    for run in runs:
        if run.status in (RunStatus.ERROR, RunStatus.CONFIG_ERROR):
            raise RequestedSyncFailed(
                f"The requested {WORDS[job.kind]} of {feed.name} ended {run.status}: "
                f"{run.message or 'no item was synced'}."
            )
    log.info(
        "api.sync_finished",
        feed=feed.name,
        kind=job.kind.value,
        run_ids=run_ids,
        rows_synced=sum(r.rows_synced for r in runs),
        failed=sum(r.failed for r in runs),
    )
    return run_ids


def _run(ctx: Context, feed: Feed, job: RequestedSync) -> list[str]:
    if job.kind is SyncKind.RESYNC_ERRORS:
        return resync_category(ctx, feed, job.category or "").run_ids
    if job.kind is SyncKind.RESYNC:
        outcome = resync(ctx, feed, ResyncRequest())
    else:
        outcome = indexer.reindex(ctx, feed)
    return [outcome.run_id] if outcome.run_id else []


class FleetSync:
    """The fleet trigger: the same sync as the Celery task `feedsync.integration_sync`, run by
    whichever worker takes it; the worker frees the request lock when the sync ends."""

    def __init__(self, send_task: Callable[..., object]) -> None:
        self._send_task = send_task

    def __call__(self, ctx: Context, feed: Feed, job: RequestedSync = REINDEX) -> None:
        request = take_request_lock(ctx, feed)
        args = [feed.name, request.name, request.owner, job.kind.value, job.category]
        try:
            self._send_task(INTEGRATION_SYNC_TASK, args=args)
        except Exception:
            request.release()  # nothing was queued: a new request may try again at once
            raise
        log.info("api.sync_queued", feed=feed.name, kind=job.kind.value, via="celery")


class BackgroundSync:
    """The embedded trigger: the requested sync in a thread of this process. `join` waits for the syncs still running (at shutdown)."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def __call__(self, ctx: Context, feed: Feed, job: RequestedSync = REINDEX) -> None:
        request = take_request_lock(ctx, feed)
        thread = threading.Thread(
            target=self._run,
            args=(ctx, feed, request, job),
            name=f"api-sync-{feed.name}",
            daemon=True,
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        log.info("api.sync_queued", feed=feed.name, kind=job.kind.value)

    def _run(self, ctx: Context, feed: Feed, request: Lock, job: RequestedSync) -> None:
        try:
            run_requested_sync(ctx, feed, request, job)
        except Exception:
            # Nobody waits on this thread: the log (and the run row) are where the failure shows.
            log.exception("api.sync_failed", feed=feed.name)

    def join(self, timeout_s: float) -> list[str]:
        """Wait up to `timeout_s` for running syncs; the names of those still running."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]


def trigger_for(settings: Settings) -> SyncTrigger:
    """Where requested syncs run: on the fleet's workers when a broker is configured, else in a
    thread of this process."""
    if not settings.broker_url:
        return BackgroundSync()
    from worker.app import create_app  # Celery only for a fleet: the embedded mode has no broker

    return FleetSync(create_app(settings).send_task)
