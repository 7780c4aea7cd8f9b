"""Prometheus metrics of the worker: what it sent, and how far behind each feed is.

Counters and the job histogram are kept by the process that does the work. Backlog and lag are
read from the databases at scrape time, so every worker's endpoint shows the fleet's true state
whatever process logged or synced the changes. In a Celery worker with prefork children the
counters live in each child: `enable_multiprocess()` (called at worker start, before the pool
forks) switches prometheus_client to its multiprocess mode so the endpoint sums them.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from config.context import AppContext, open_context
from config.settings import Settings
from feeds.context import Context
from feeds.pipeline.run import Outcome
from feeds.schedule import catalog
from feeds.state import feed_items as store
from feeds.state import indexer_state
from feeds.tracking import changelog

log = structlog.get_logger("worker.metrics")

JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


@dataclass(frozen=True)
class _Metrics:
    sent: Counter
    failed: Counter
    skipped: Counter
    job_seconds: Histogram


_lock = threading.Lock()
_metrics: list[_Metrics] = []


def _get() -> _Metrics:
    """The counters, created on first use: after `enable_multiprocess()` has had its say."""
    with _lock:
        if not _metrics:
            _metrics.append(
                _Metrics(
                    Counter(
                        "feedsync_items_sent", "Items the destination accepted, per feed", ["feed"]
                    ),
                    Counter(
                        "feedsync_items_failed",
                        "Items whose export failed (rejected, retryable or not buildable), per feed",
                        ["feed"],
                    ),
                    Counter(
                        "feedsync_items_skipped",
                        "Items rebuilt but unchanged (same hash), hence not sent, per feed",
                        ["feed"],
                    ),
                    Histogram(
                        "feedsync_job_duration_seconds",
                        "Duration of job runs (cron jobs and realtime syncs), per job",
                        ["job"],
                        buckets=JOB_BUCKETS,
                    ),
                )
            )
        return _metrics[0]


def observe_outcome(outcome: Outcome) -> None:
    """Count what one sync of one feed did."""
    m, c, feed = _get(), outcome.counts, outcome.feed.name
    m.sent.labels(feed).inc(c.rows_synced)
    m.failed.labels(feed).inc(c.failed)
    m.skipped.labels(feed).inc(c.skipped)


def observe_job(job: str, seconds: float) -> None:
    _get().job_seconds.labels(job).observe(seconds)


class DatabaseCollector(Collector):
    """Backlog and lag per feed, read from the changelogs and indexer states at each scrape."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "feedsync_backlog",
            "Entities changed in the changelog after the indexer's pointer (not yet synced)",
            labels=["feed"],
        )
        lag = GaugeMetricFamily(
            "feedsync_lag_seconds",
            "Age of the oldest change not yet synced (0 when none is pending)",
            labels=["feed"],
        )
        rebuilds = GaugeMetricFamily(
            "feedsync_rebuilds_pending",
            "Entities whose document could not be built, waiting to be rebuilt (status 0 items)",
            labels=["feed"],
        )
        try:
            with self.ctx.db.connect() as conn:
                states = indexer_state.all_states(conn)
                unbuilt = store.pending_rebuilds(conn)
            with self.ctx.source.connect() as src:
                for feed in self.ctx.registry:
                    after = states[feed.indexer_id].version_id
                    backlog.add_metric([feed.name], changelog.backlog(src, feed, after))
                    age = changelog.oldest_pending_age(src, feed, after)
                    lag.add_metric([feed.name], age or 0.0)
                    rebuilds.add_metric([feed.name], unbuilt.get(feed.name, 0))
        except Exception:  # a scrape must answer; the failure shows as missing series and a log
            log.exception("metrics.collect_failed")
            return
        yield backlog
        yield lag
        yield rebuilds


class JobsCollector(Collector):
    """The job catalog: one series per job and its group, 1 when on the schedule, 0 when its
    group is disabled. Join it to the job histogram to sum durations by group."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        scheduled = GaugeMetricFamily(
            "feedsync_job_scheduled",
            "Jobs of the catalog by cron group: 1 on the schedule, 0 when the group is disabled",
            labels=["job", "group"],
        )
        disabled = self.ctx.plan.disabled_groups
        for job in catalog(self.ctx.registry.names()):
            scheduled.add_metric([job.name, job.group.value], 0 if job.group in disabled else 1)
        yield scheduled


class _Process(Collector):
    """This process's own registry (counters, histogram, process and GC metrics)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry_for(ctx: Context) -> CollectorRegistry:
    """What the endpoint serves: the counters (of every process, in multiprocess mode) and the DB gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_Process())
    registry.register(DatabaseCollector(ctx))
    registry.register(JobsCollector(ctx))
    return registry


@dataclass
class Endpoint:
    """A running metrics endpoint."""

    server: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(ctx: AppContext, port: int | None = None, addr: str = "0.0.0.0") -> Endpoint:
    """Serve /metrics on `port` (default METRICS_PORT; 0 picks a free one) in a thread."""
    chosen = ctx.settings.metrics_port if port is None else port
    server, thread = start_http_server(chosen, addr=addr, registry=registry_for(ctx))
    endpoint = Endpoint(server, thread)
    log.info("metrics.serving", port=endpoint.port, path="/metrics")
    return endpoint


def enable_multiprocess(directory: str | None = None) -> str:
    """Switch to prometheus_client's multiprocess mode (before any counter exists, before forking).

    Returns the directory where each process keeps its values (a fresh temporary one by default).
    """
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="feedsync-metrics-")
    else:
        # A directory of this worker's own, emptied: files of a previous run would be summed
        # into its counters, and another worker on the host must keep its live files.
        directory = os.path.join(directory, f"{socket.gethostname()}-{os.getpid()}")
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    # prometheus_client reads the variable once, at import; set the value class it would pick.
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue()
    return directory


def connect_celery(settings: Settings) -> None:
    """In a Celery worker: multiprocess mode and the endpoint, started with the worker (main process).

    The endpoint reads backlog and lag through a context of its own, opened in the main process;
    forked pool processes drop its pooled connections without closing them (they are the parent's).
    """
    from celery.signals import worker_init, worker_process_init, worker_shutdown

    state: dict[str, Any] = {}

    @worker_init.connect(weak=False)
    def _start(**_: Any) -> None:
        enable_multiprocess()
        ctx = open_context(settings, migrate=False)
        state["ctx"] = ctx
        try:
            state["endpoint"] = serve(ctx)
        except OSError as exc:  # the port is taken (two workers on one host): say so, work on
            log.warning("metrics.not_served", port=settings.metrics_port, error=str(exc))

    @worker_process_init.connect(weak=False)
    def _forked(**_: Any) -> None:
        ctx = state.get("ctx")
        if ctx is not None:
            ctx.db.dispose(close=False)
            ctx.source.dispose(close=False)

    @worker_shutdown.connect(weak=False)
    def _stop(**_: Any) -> None:
        if "endpoint" in state:
            state.pop("endpoint").stop()
