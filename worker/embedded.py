"""The embedded all-in-one runner: jobs on their cron schedule in this process, no broker; the
realtime listener, the metrics endpoint and the HTTP API in threads beside them."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog

from config.context import AppContext
from feeds.context import Context
from feeds.errors import FeedsyncError
from feeds.schedule import catalog, next_fire, scheduled
from worker import metrics
from worker.api.listen import base_url
from worker.jobs import JobFailed, run_job
from worker.realtime import Listener, sync_in_process

log = structlog.get_logger("worker.embedded")


@dataclass
class Entry:
    name: str
    cron: str
    next_at: datetime


def schedule(ctx: Context, now: datetime) -> list[Entry]:
    """Each job of an enabled group with its cron (TOML override or default) and next due time
    after `now`."""
    entries = []
    for job in scheduled(catalog(ctx.registry.names()), ctx.plan.disabled_groups):
        cron = ctx.plan.cron(job.name)
        entries.append(Entry(job.name, cron, next_fire(cron, now)))
    return entries


def run_forever(
    ctx: Context,
    stop: threading.Event,
    extra: Callable[[], None] | None = None,
    tick_s: float = 1.0,
) -> None:
    """Run due jobs until `stop` is set; a job that was due several times while busy runs once."""
    entries = schedule(ctx, datetime.now(UTC))
    on_schedule = {entry.name for entry in entries}
    for name in ("indexer_reindex_all_invalid", "indexer_update_all_views"):
        if name in on_schedule:  # not when their group is disabled
            _run(ctx, name)  # start in sync rather than waiting for the first minute
    while not stop.wait(tick_s):
        if extra is not None:
            extra()
        now = datetime.now(UTC)
        for entry in entries:
            if entry.next_at <= now:
                _run(ctx, entry.name)
                entry.next_at = next_fire(entry.cron, datetime.now(UTC))


def _run(ctx: Context, name: str) -> None:
    try:
        for line in run_job(ctx, name):
            log.info("job.summary", job=name, summary=line)
    except JobFailed as failed:
        for line in failed.lines:
            log.warning("job.summary", job=name, summary=line)
    except Exception:
        # One failing job must not stop the runner; the error is logged and the job runs again next tick.
        log.exception("job.failed", job=name)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set `stop`: the job in progress finishes, then all stops.

    A second signal interrupts at once (KeyboardInterrupt). Main thread only.
    """

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("embedded.stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class Background:
    """What runs beside the jobs: realtime listener, metrics endpoint, HTTP API."""

    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)
    metrics: metrics.Endpoint | None = None
    api: Any = None  # uvicorn.Server
    api_url: str | None = None

    def close(self) -> None:
        self.stop.set()
        if self.api is not None:
            self.api.should_exit = True
        if self.metrics is not None:
            self.metrics.stop()
        for thread in self.threads:
            thread.join(timeout=10)


def start_listener(ctx: AppContext, background: Background) -> Listener:
    """The realtime listener in a thread, syncing realtime feeds in this process."""
    listener = Listener(ctx, sync_in_process(ctx))
    thread = threading.Thread(
        target=listener.run, args=(background.stop,), name="realtime", daemon=True
    )
    thread.start()
    background.threads.append(thread)
    return listener


def start_api(
    ctx: AppContext, background: Background, listener: socket.socket, host: str
) -> str | None:
    """The HTTP API and dashboard in a thread, on `listener` (bound already, so the port is known
    to be free); its base URL, or None when this build has no API."""
    try:
        import uvicorn

        from worker.api.app import create_app
        from worker.sync_requests import trigger_for
    except ImportError as exc:
        log.warning("api.unavailable", error=str(exc))
        return None
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx.settings, trigger=trigger_for(ctx.settings)),
            host=host,
            port=port,
            log_config=None,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="api", daemon=True
    )
    thread.start()
    background.threads.append(thread)
    background.api = server
    while not server.started and thread.is_alive():
        background.stop.wait(0.05)
    if not server.started:
        raise FeedsyncError(
            f"The API on {host}:{port} did not start (see the log above); fix it, or run with --no-api."
        )
    background.api_url = base_url(host, port)
    return background.api_url
