"""The realtime listener: turns changelog signals into immediate partial syncs of realtime feeds.

On PostgreSQL it LISTENs on the changelog channel (see `feeds.realtime`); on SQLite, which has no
notifications, it polls the changelog heads every `REALTIME_POLL_S`. Bursts are debounced: the
signals of one feed within `debounce_s` lead to one dispatch. What a dispatch does is pluggable:
sync in this process (embedded `run`, `listen` without a broker) or enqueue the Celery task
`feedsync.realtime_sync` (fleet). The minute jobs stay the safety net for anything missed here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from redis import Redis
from sqlalchemy.engine import make_url

from config.context import AppContext
from feeds.context import Context
from feeds.definitions import Feed
from feeds.pipeline.run import Skip
from feeds.tracking import realtime
from worker import metrics

log = structlog.get_logger("worker.realtime")

# Seconds until a feed may be dispatched again, or None when done.
Dispatch = Callable[[Feed], float | None]

# On PostgreSQL the signal is the main path; this poll only catches what a lost connection missed.
SIGNALLED_POLL_S = 10.0
LOCKED_RETRY_S = 0.5  # another process holds the feed: its run may predate this change
FAILED_RETRY_S = 30.0  # the sync raised (destination down…): don't hammer it; the jobs retry too
RECONNECT_MAX_S = 30.0
HEARTBEAT_S = 5.0  # how often the heartbeat file is touched (container health checks read it)


def sync_in_process(ctx: Context) -> Dispatch:
    """Dispatch by syncing the feed here and now (embedded run, `listen` without a broker)."""

    def dispatch(feed: Feed) -> float | None:
        with structlog.contextvars.bound_contextvars(job="realtime_sync", feed=feed.name):
            return _sync(ctx, feed)

    return dispatch


def _sync(ctx: Context, feed: Feed) -> float | None:
    started = time.monotonic()
    try:
        outcome = realtime.sync(ctx, feed)
    except Exception:
        log.exception("realtime.sync_failed", retry_in_s=FAILED_RETRY_S)
        return FAILED_RETRY_S
    if outcome is None:
        return None
    if outcome.skipped is Skip.LOCKED:
        return LOCKED_RETRY_S
    metrics.observe_job("realtime_sync", time.monotonic() - started)
    metrics.observe_outcome(outcome)
    log.info(
        "realtime.synced",
        run_id=outcome.run_id,
        seconds=round(outcome.seconds, 3),
        **outcome.counts.as_dict(),
    )
    return None


REALTIME_TASK = "feedsync.realtime_sync"
# How long a queued realtime task stands for its feed: past it (a lost task) a new one is sent.
QUEUED_KEEP_S = 300


def queued_key(feed: str) -> str:
    """Set while a realtime task of `feed` waits in the queue (or retries): new changes join it."""
    return f"feedsync:realtime:queued:{feed}"


def enqueue_task(app: Any, redis: Redis) -> Dispatch:
    """Dispatch by queueing `feedsync.realtime_sync` for a fleet worker (the fleet's `listen`), at
    most one waiting per feed: while a feed is locked by a long reindex, changes join the task that
    waits instead of each queueing one that retries."""

    def dispatch(feed: Feed) -> float | None:
        try:
            if not redis.set(queued_key(feed.name), 1, nx=True, ex=QUEUED_KEEP_S):
                log.debug("realtime.coalesced", feed=feed.name)
                return None
            app.send_task(REALTIME_TASK, args=[feed.name])
        except Exception:
            log.exception("realtime.enqueue_failed", feed=feed.name, retry_in_s=5.0)
            return 5.0
        log.info("realtime.enqueued", feed=feed.name)
        return None

    return dispatch


class Listener:
    """Watches the realtime feeds and dispatches each one that changed, debounced."""

    def __init__(
        self,
        ctx: AppContext,
        dispatch: Dispatch,
        *,
        debounce_s: float = 0.05,
        heartbeat: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.dispatch = dispatch
        self.debounce_s = debounce_s
        self.heartbeat = heartbeat
        self._beat_at = 0.0
        self.signalled = make_url(ctx.settings.source_database_url).get_backend_name() == (
            "postgresql"
        )
        self.poll_s = SIGNALLED_POLL_S if self.signalled else ctx.settings.realtime_poll_s
        self._due: dict[str, float] = {}  # feed name → monotonic time it is dispatched at
        self._next_poll = 0.0
        self._backoff = 1.0  # seconds before retrying after a failure; doubles, reset by success
        self._failed_at: float | None = None  # time.monotonic() of the first failure of an outage
        self.ready = threading.Event()  # set once listening (tests wait for it)

    def run(self, stop: threading.Event) -> None:
        """Listen until `stop` is set."""
        log.info(
            "realtime.listening",
            via="postgresql notify" if self.signalled else "changelog polling",
            poll_s=self.poll_s,
        )
        while not stop.is_set():
            try:
                if self.signalled:
                    self._listen(stop)
                else:
                    self._poll(stop)
                return
            except Exception as exc:  # database gone, connection lost: retry, then catch up
                log.warning("realtime.listener_failed", error=str(exc), retry_in_s=self._backoff)
                if self._failed_at is None:
                    self._failed_at = time.monotonic()
                self._next_poll = 0.0
                stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)

    def _poll(self, stop: threading.Event) -> None:
        self.ready.set()
        while not stop.is_set():
            self._step(time.monotonic())
            self._recovered()
            stop.wait(self._wait_s(time.monotonic()))

    def _recovered(self) -> None:
        """Say so once the listener works again after a failure."""
        if self._failed_at is not None:
            log.info("realtime.reconnected", down_s=round(time.monotonic() - self._failed_at, 1))
            self._failed_at = None

    def _listen(self, stop: threading.Event) -> None:
        import psycopg

        url = make_url(self.ctx.settings.source_database_url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()
            own_schema = schema[0] if schema else "public"
            conn.execute(f'LISTEN "{realtime.CHANNEL}"')
            self._next_poll = 0.0  # anything logged while not listening
            self.ready.set()
            self._recovered()
            while not stop.is_set():
                self._step(time.monotonic())
                wait = min(self._wait_s(time.monotonic()), 0.5)  # 0.5: notice `stop` soon
                for note in conn.notifies(timeout=wait, stop_after=1):
                    signal = realtime.parse_signal(note.payload)
                    if signal is not None and signal.schema == own_schema:
                        self.signal(signal.feed)

    def signal(self, feed_name: str) -> None:
        """A feed changed: dispatch it after the debounce window (unless already due)."""
        if feed_name in self.ctx.registry.names():
            self._due.setdefault(feed_name, time.monotonic() + self.debounce_s)

    def _step(self, now: float) -> None:
        if self.heartbeat is not None and now - self._beat_at >= HEARTBEAT_S:
            self._beat_at = now
            self.heartbeat.touch()
        if now >= self._next_poll:
            for feed in realtime.pending(self.ctx):
                self._due.setdefault(feed.name, now)
            self._next_poll = now + self.poll_s
            self._backoff = 1.0
        for name, due in sorted(self._due.items(), key=lambda item: item[1]):
            if due > time.monotonic():
                continue
            del self._due[name]
            retry_in = self.dispatch(self.ctx.registry.get(name))
            if retry_in is not None:
                self._due[name] = time.monotonic() + retry_in

    def _wait_s(self, now: float) -> float:
        deadlines = [self._next_poll, *self._due.values()]
        return max(0.0, min(deadlines) - now)
