"""A scheduled job in the fleet: at most once per beat tick, at most one run at a time, recorded.

Two beats send every tick, and a worker that was down finds a queue of old ticks; this is where
those tasks are sorted out before any work:

- the first task of a tick claims it in Redis; another task of the same tick is a `duplicate`;
- a task whose tick a run of the job has already covered (a run started at or after the tick) is
  `superseded`: after downtime the first waiting task runs the job, the rest of the backlog finds
  that run and collapses into it, and the last tick is never dropped for lack of a later one;
- the job's fleet lock is taken with a TTL and kept alive by a heartbeat while the job runs; a
  tick that finds it held is `locked` (logged and recorded as skipped).

A task delivered a second time (its worker died: late acks, reject on worker lost, visibility
timeout) finds its own claim and runs the job again, which is safe because every job is
idempotent. When the dead run's process ran on this machine (a killed pool process), its locks are
free at once; otherwise (a lost host) the task waits for their expiry: the job lock's, and that of
the dead run's feed locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import structlog
from redis import Redis

from config.context import AppContext
from feeds.history import job_runs
from feeds.pipeline import stopping
from feeds.state.locks import is_dead
from worker.fleet_lock import PREFIX, FleetLock, held, task_of, token_for
from worker.jobs import run_job

log = structlog.get_logger("worker.fleet")


class Verdict(StrEnum):
    RAN = "ran"
    DUPLICATE = "duplicate"  # another task already runs this tick
    SUPERSEDED = "superseded"  # a run started since the tick covered it
    LOCKED = "locked"  # the job is running elsewhere
    WAIT = "wait"  # this task's own earlier delivery died holding the lock: retry after its expiry


@dataclass(frozen=True)
class FleetRun:
    verdict: Verdict
    lines: list[str] = field(default_factory=list)
    retry_in_s: float = 0.0


def run_scheduled(
    ctx: AppContext,
    redis: Redis,
    job: str,
    *,
    task_id: str,
    tick: datetime | None,
    now: datetime | None = None,
) -> FleetRun:
    """Run `job` for the beat tick `tick` unless another task does or did (see the module doc)."""
    fleet = ctx.settings.file.fleet
    with_log = log.bind(job=job, task_id=task_id, tick=tick.isoformat() if tick else None)
    # Kept well past any redelivery, so a second delivery still recognises its claim.
    keep_s = max(2 * fleet.visibility_timeout_s, 3600)
    if tick is not None:
        key = f"{PREFIX}:tick:{job}:{tick.isoformat()}"
        owner = _text(redis.get(key))
        if owner is None:
            started = _text(redis.get(_started_key(job)))
            if started is not None and datetime.fromisoformat(started) >= tick:
                with_log.info("job.skipped", reason="covered by a run started since the tick")
                return FleetRun(Verdict.SUPERSEDED)
            if not redis.set(key, task_id, nx=True, ex=keep_s):
                owner = _text(redis.get(key))
        if owner is not None and owner != task_id:
            with_log.info("job.skipped", reason="tick already taken", by=owner)
            return FleetRun(Verdict.DUPLICATE)
        if owner == task_id and (wait_s := _feed_locks_left_s(ctx, redis, task_id, keep_s, now)):
            with_log.info(
                "job.waiting", reason="its earlier delivery died holding feed locks", seconds=wait_s
            )
            return FleetRun(Verdict.WAIT, retry_in_s=wait_s)
    lock = FleetLock(redis, job, token_for(task_id), fleet.lock_ttl_s)
    if not lock.acquire():
        holder = lock.holder()
        if holder is not None and task_of(holder) == task_id:
            wait_s = lock.remaining_s() + 0.5
            with_log.info(
                "job.waiting", reason="its earlier delivery died holding the lock", seconds=wait_s
            )
            return FleetRun(Verdict.WAIT, retry_in_s=wait_s)
        with_log.info("job.skipped", reason="locked: the job is running elsewhere", holder=holder)
        job_runs.record_skip(
            ctx.db, job, "locked: the job is running elsewhere", tick=tick, task_id=task_id
        )
        return FleetRun(Verdict.LOCKED)
    redis.set(_started_key(job), (now or datetime.now(UTC)).isoformat(), ex=keep_s)
    with held(lock) as heartbeat:
        # A lost lock (Redis unreachable past the TTL) stops the job at its next batch.
        probe = heartbeat.lost.is_set
        stopping.install(probe)
        try:
            lines = run_job(ctx, job, tick=tick, task_id=task_id, exclusive=True)
        finally:
            stopping.remove(probe)
    return FleetRun(Verdict.RAN, lines)


def _feed_locks_left_s(
    ctx: AppContext, redis: Redis, task_id: str, keep_s: int, now: datetime | None
) -> float:
    """Seconds until the feed locks of this task's dead earlier run have surely expired (0: none).

    They expire at most `feed_lock_ttl_s` after it died, so after that long from the first time
    a delivery found it dead. Run sooner, the job would find its feeds locked and skip them.
    A run of a process known dead on this machine left no lock to wait for: they are free at once.
    """
    workers = job_runs.left_running(ctx.db, task_id)
    if all(is_dead(worker) for worker in workers):
        # None died (first delivery, or requeued by a warm shutdown after its batch), or its
        # process was killed on this machine.
        return 0.0
    key = f"{PREFIX}:died:{task_id}"
    redis.set(key, (now or datetime.now(UTC)).isoformat(), nx=True, ex=keep_s)
    found = datetime.fromisoformat(_text(redis.get(key)) or "")
    waited = ((now or datetime.now(UTC)) - found).total_seconds()
    left = ctx.settings.file.fleet.feed_lock_ttl_s - waited
    return left + 0.5 if left > 0 else 0.0


def _started_key(job: str) -> str:
    """When the job's latest run started (any tick at or before it is covered by that run)."""
    return f"{PREFIX}:started:{job}"


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
