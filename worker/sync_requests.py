"""Syncs requested through the API (`POST /cdi/integrations/{id}/sync`): the request lock, the
sync itself, and the two triggers that run it.

The API takes its trigger as a parameter (`create_app(trigger=...)`) and knows nothing of Celery:
`trigger_for(settings)` picks `FleetSync` when a broker is configured (`BROKER_URL`: a Celery task
any worker runs, which ends failed when the sync fails), else `BackgroundSync` (a thread of the API
process). A trigger either accepts the sync or raises `LockedError` when that feed already has a
job in progress (answered `429 Another job is in progress`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from config.settings import Settings
from feeds.context import Context
from feeds.definitions import Feed, RunStatus
from feeds.errors import FeedsyncError, LockedError
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.pipeline.run import Outcome, lock_name
from feeds.state.locks import Lock, is_locked

log = structlog.get_logger("worker.sync_requests")

SyncTrigger = Callable[[Context, Feed], None]

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


def run_requested_sync(ctx: Context, feed: Feed, request: Lock) -> Outcome | None:
    """The requested sync itself (in an API thread or a fleet worker); frees the request lock.

    None when another process holds the feed. A sync that failed raises (once the request lock is
    freed): its own exception, or RequestedSyncFailed when its run ended `error` or `config_error`.
    """
    try:
        outcome = indexer.reindex(ctx, feed)
    except LockedError:
        log.info("api.sync_skipped", feed=feed.name, reason="locked by another process")
        return None
    finally:
        request.release()
    with ctx.db.connect() as conn:
        run = read_model.get_run(conn, outcome.run_id or "")
    if run is not None and run.status in (RunStatus.ERROR, RunStatus.CONFIG_ERROR):
        raise RequestedSyncFailed(
            f"The requested sync of {feed.name} ended {run.status}: "
            f"{run.message or 'no item was synced'}."
        )
    log.info("api.sync_finished", feed=feed.name, run_id=outcome.run_id, **outcome.counts.as_dict())
    return outcome


class FleetSync:
    """The fleet trigger: the same sync as the Celery task `feedsync.integration_sync`, run by
    whichever worker takes it; the worker frees the request lock when the sync ends."""

    def __init__(self, send_task: Callable[..., object]) -> None:
        self._send_task = send_task

    def __call__(self, ctx: Context, feed: Feed) -> None:
        request = take_request_lock(ctx, feed)
        try:
            self._send_task(INTEGRATION_SYNC_TASK, args=[feed.name, request.name, request.owner])
        except Exception:
            request.release()  # nothing was queued: a new request may try again at once
            raise
        log.info("api.sync_queued", feed=feed.name, via="celery")


class BackgroundSync:
    """The embedded trigger: a full reindex of the feed (it sends only what changed) in a thread of
    this process. `join` waits for the syncs still running (at shutdown)."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def __call__(self, ctx: Context, feed: Feed) -> None:
        request = take_request_lock(ctx, feed)
        thread = threading.Thread(
            target=self._run, args=(ctx, feed, request), name=f"api-sync-{feed.name}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        log.info("api.sync_queued", feed=feed.name)

    def _run(self, ctx: Context, feed: Feed, request: Lock) -> None:
        try:
            run_requested_sync(ctx, feed, request)
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
