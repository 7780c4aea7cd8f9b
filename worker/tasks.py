"""The Celery tasks: `feedsync.<job>` for every job of SPEC §3, `feedsync.resync_range` and
`feedsync.integration_sync` (a sync requested through the API).

Each worker process opens its context (databases, destinations) once, on its first task, after
the prefork fork. A warm shutdown (SIGTERM) marks the worker as stopping in Redis; its running
jobs see it between two batches, stop there (every finished batch committed) and put their task
back in the queue for another worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from celery import Task
from celery.signals import celeryd_init, worker_process_init, worker_shutting_down
from redis import Redis
from redis.exceptions import RedisError

from config.context import AppContext, open_context
from config.settings import Settings
from feeds.definitions import Keys
from feeds.errors import FeedsyncError
from feeds.pipeline import stopping
from feeds.pipeline.indexer import Batch
from feeds.pipeline.ranges import counts_dict, process_range, range_run
from feeds.state.locks import Lock
from worker import logs
from worker.app import app
from worker.beat import jobs_of, task_name
from worker.fanout import RANGE_TASK
from worker.fleet import Verdict, run_scheduled
from worker.fleet_lock import stop_key
from worker.sync_requests import (
    INTEGRATION_SYNC_TASK,
    RequestedSync,
    SyncKind,
    run_requested_sync,
)

log = structlog.get_logger("worker.tasks")

settings: Settings = app.feedsync_settings
_context: AppContext | None = None
_redis: Redis | None = None
_hostname: str | None = None
# A waiting rerun retries until the dead run's lock expired; this bounds it.
_MAX_WAITS = 50
_STOPPING_KEEP_S = 3600


def context() -> AppContext:
    global _context
    if _context is None:
        _context = open_context(settings)
    return _context


def redis() -> Redis:
    global _redis
    if _redis is None:
        _redis = Redis.from_url(settings.broker_url or "")
    return _redis


@celeryd_init.connect
def _worker_starting(sender: str | None = None, **_: Any) -> None:
    global _hostname
    _hostname = sender
    logs.configure(settings.log_format)
    if sender:
        redis().delete(stop_key(sender))  # a restarted worker of the same name is not stopping


@worker_process_init.connect
def _process_forked(**_: Any) -> None:
    # A forked pool process must not share the parent's connections.
    global _context, _redis
    _context, _redis = None, None


@worker_shutting_down.connect
def _warm_shutdown(sender: str | None = None, **_: Any) -> None:
    if sender:
        redis().set(stop_key(sender), 1, ex=_STOPPING_KEEP_S)
        log.info(
            "worker.stopping", worker=sender, reason="warm shutdown: jobs stop after their batch"
        )


def _stop_requested() -> bool:
    if _hostname is None:
        return False
    try:
        return bool(redis().exists(stop_key(_hostname)))
    except RedisError as exc:
        # Redis briefly unreachable is no reason to stop (or fail) a job; the lock decides that.
        log.warning("worker.stop_probe_failed", error=str(exc))
        return False


stopping.install(_stop_requested)


def _register_job(job: str) -> None:
    @app.task(name=task_name(job), bind=True, max_retries=_MAX_WAITS)
    def run(self: Task, tick: str | None = None) -> dict[str, Any]:
        task_id = str(self.request.id)
        with structlog.contextvars.bound_contextvars(job=job, task_id=task_id):
            outcome = run_scheduled(
                context(),
                redis(),
                job,
                task_id=task_id,
                tick=datetime.fromisoformat(tick) if tick else None,
            )
        if outcome.verdict is Verdict.WAIT:
            raise self.retry(countdown=outcome.retry_in_s)
        return {"verdict": outcome.verdict.value, "summary": outcome.lines}


# Every job of the catalog, scheduled or not: a disabled group's task can still be sent by hand.
for _job in jobs_of(settings):
    _register_job(_job.name)


@app.task(name=RANGE_TASK, bind=True)
def resync_range(
    self: Task,
    feed: str,
    run_id: str,
    operation: str,
    options: dict[str, Any],
    seq: int,
    lo: int | None,
    hi: int | None,
    entities: int,
) -> dict[str, Any]:
    """One key range of a fan-out resync: build, send, record, mark done (idempotent on rerun)."""
    ctx = context()
    run = range_run(ctx, feed, run_id, operation, options)
    with structlog.contextvars.bound_contextvars(feed=feed, run_id=run_id, task_id=self.request.id):
        counts = process_range(ctx, run, Batch(Keys(lo=lo, hi=hi), entities, seq=seq))
    return {"counts": counts_dict(counts), "config_error": run.delivery.config_error}


@app.task(name=INTEGRATION_SYNC_TASK, bind=True)
def integration_sync(
    self: Task,
    feed: str,
    request_lock: str,
    request_owner: str,
    kind: str = SyncKind.REINDEX.value,
    category: str | None = None,
) -> dict[str, Any]:
    """A sync requested through the API (`POST /cdi/integrations/{id}/sync`, an operator action:
    reindex, full resync, resync of a category's errors); frees the API's request lock.

    A failed sync fails the task (Flower, AsyncResult), not only its run row."""
    ctx = context()
    request = Lock(ctx.db, request_lock, owner=request_owner)
    with structlog.contextvars.bound_contextvars(feed=feed, task_id=self.request.id):
        try:
            definition = ctx.registry.get(feed)
            job = RequestedSync(SyncKind(kind), category)
        except (FeedsyncError, ValueError):
            request.release()  # the feed is gone since the request (or a bad kind): free it
            raise
        run_ids = run_requested_sync(ctx, definition, request, job)
    if run_ids is None:
        return {"feed": feed, "skipped": "locked by another process"}
    return {"feed": feed, "kind": kind, "run_ids": run_ids}
