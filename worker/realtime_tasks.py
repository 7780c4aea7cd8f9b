"""The fleet side of realtime mode and of the metrics endpoint.

`feedsync.realtime_sync` is what `python -m worker listen` enqueues when a realtime feed changed:
an immediate partial sync of that feed. A feed held by another process (a partial sync or a
reindex in progress, which may have started before this change was logged) is retried shortly.
Importing this module (the app includes it) also starts the Prometheus endpoint with the worker
and binds every task's id to its log lines.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import Task

from feeds.pipeline.run import Skip
from feeds.tracking import realtime
from worker import logs, metrics
from worker.app import app
from worker.realtime import LOCKED_RETRY_S, QUEUED_KEEP_S, REALTIME_TASK, queued_key
from worker.tasks import context, redis, settings

log = structlog.get_logger("worker.realtime_tasks")

# A realtime sync waits at most this many LOCKED_RETRY_S for a feed another process holds;
# past that the minute job picks the change up (the changelog keeps it).
_MAX_LOCKED_RETRIES = 240


@app.task(name=REALTIME_TASK, bind=True, max_retries=_MAX_LOCKED_RETRIES)
def realtime_sync(self: Task, feed: str) -> dict[str, Any]:
    """Partial sync of one realtime feed, now."""
    ctx = context()
    started = time.monotonic()
    with structlog.contextvars.bound_contextvars(job="realtime_sync", feed=feed):
        # Changes logged from now on are not covered by this sync: let them queue a new task.
        redis().delete(queued_key(feed))
        outcome = realtime.sync(ctx, ctx.registry.get(feed))
        if outcome is None:
            return {"feed": feed, "synced": False}
        if outcome.skipped is Skip.LOCKED:
            if not redis().set(queued_key(feed), 1, nx=True, ex=QUEUED_KEEP_S):
                log.info("realtime.coalesced", reason="a newer task of the feed is queued")
                return {"feed": feed, "synced": False}
            log.info("realtime.retry", reason="locked by another process")
            raise self.retry(countdown=LOCKED_RETRY_S)
        metrics.observe_job("realtime_sync", time.monotonic() - started)
        metrics.observe_outcome(outcome)
        log.info("realtime.synced", run_id=outcome.run_id, **outcome.counts.as_dict())
    return {"feed": feed, "synced": True, "run_id": outcome.run_id, **outcome.counts.as_dict()}


metrics.connect_celery(settings)
logs.connect_celery()
