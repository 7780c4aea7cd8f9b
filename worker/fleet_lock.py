"""Fleet-wide job locks in Redis: one run of a job at a time, whatever the number of workers.

Every worker of the fleet shares the broker's Redis, so that is where the job locks live. A lock
has a TTL so that a dead worker frees it by itself; a heartbeat thread renews it while the job
runs (a job may take far longer than the TTL). As with the feed locks (feeds/locks.py), a lock
whose holder ran on this machine and is known dead (kill -9) is free at once: its token names the
holder's process. Compare-and-set uses WATCH/MULTI, not Lua, so the same code runs on fakeredis
in unit tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from redis import Redis, WatchError

from feeds.history.job_runs import this_worker
from feeds.state.locks import is_dead

log = structlog.get_logger("worker.fleet_lock")

PREFIX = "feedsync"


def token_for(task_id: str) -> str:
    """The token of a lock held for a task by this process: `machine:pid:task id`."""
    return f"{this_worker()}:{task_id}"


def task_of(token: str) -> str:
    """The task id a lock token was taken for."""
    return token.rsplit(":", 1)[-1]


class FleetLock:
    """A Redis lock named for a job, owned by a token (`token_for` the Celery task id)."""

    def __init__(self, redis: Redis, name: str, token: str, ttl_s: float) -> None:
        self.redis = redis
        self.key = f"{PREFIX}:lock:{name}"
        self.token = token
        self.ttl_ms = max(1, int(ttl_s * 1000))

    def acquire(self) -> bool:
        """Take the lock if it is free, or if its holder's process is known dead (`is_dead`)."""
        if self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        dead = self._holder_if(is_dead)
        if dead is None:
            return False
        # Its holder was killed on this machine: no need to wait for the TTL.
        if not self._if_held_by(dead, lambda pipe: pipe.set(self.key, self.token, px=self.ttl_ms)):
            return False  # someone else was quicker
        log.warning("fleet_lock.taken_over", key=self.key, holder=dead, reason="its holder died")
        return True

    def holder(self) -> str | None:
        value = self.redis.get(self.key)
        return None if value is None else _text(value)

    def remaining_s(self) -> float:
        """Seconds until the lock expires (0 when free)."""
        return max(0.0, int(self.redis.pttl(self.key)) / 1000)

    def renew(self) -> bool:
        """Extend the TTL if we still hold the lock; False when it expired and someone took it."""
        return self._if_held_by(self.token, lambda pipe: pipe.pexpire(self.key, self.ttl_ms))

    def release(self) -> bool:
        return self._if_held_by(self.token, lambda pipe: pipe.delete(self.key))

    def _holder_if(self, test: Callable[[str], bool]) -> str | None:
        holder = self.holder()
        return holder if holder is not None and test(holder) else None

    def _if_held_by(self, token: str, action) -> bool:  # type: ignore[no-untyped-def]
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key)
                    value = pipe.get(self.key)
                    if value is None or _text(value) != token:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    action(pipe)
                    pipe.execute()
                    return True
                except WatchError:
                    continue  # the key changed between GET and EXEC: look again


class Heartbeat:
    """Renews a held lock every third of its TTL in a daemon thread; `lost` is set if it cannot."""

    def __init__(self, lock: FleetLock, interval_s: float | None = None) -> None:
        self.lock = lock
        self.interval_s = interval_s or lock.ttl_ms / 3000
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="fleet-lock-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        renewed_at = time.monotonic()
        while not self._stop.wait(self.interval_s):
            try:
                renewed = self.lock.renew()
            except Exception as exc:  # Redis unreachable: keep trying until the TTL runs out
                log.warning("fleet_lock.renew_failed", key=self.lock.key, error=str(exc))
                if time.monotonic() - renewed_at >= self.lock.ttl_ms / 1000:
                    # Expired on the server by now: another worker may hold it. Stop the job.
                    log.error("fleet_lock.lost", key=self.lock.key, reason="not renewed in its TTL")
                    self.lost.set()
                    return
                continue
            renewed_at = time.monotonic()
            if not renewed:
                log.error("fleet_lock.lost", key=self.lock.key)
                self.lost.set()
                return


@contextmanager
def held(lock: FleetLock) -> Iterator[Heartbeat]:
    """Keep an acquired lock alive for the block, then release it."""
    heartbeat = Heartbeat(lock).start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
        lock.release()


def stop_key(hostname: str) -> str:
    """Set while the worker `hostname` is shutting down warmly; its jobs stop between batches."""
    return f"{PREFIX}:stopping:{hostname}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
