"""Change-to-destination latency: from the application's commit to the item accepted by the destination.

    python benchmarks/latency.py --path pg-notify      # realtime, PostgreSQL triggers → NOTIFY
    python benchmarks/latency.py --path notify-api    # realtime, feeds.realtime.notify() in the app's transaction
    python benchmarks/latency.py --path sqlite-poll   # realtime, SQLite triggers, listener polling
    python benchmarks/latency.py --path fleet         # realtime, NOTIFY → listen → Redis → Celery worker
    python benchmarks/latency.py --path schedule      # schedule mode, the minute job
    python benchmarks/latency.py --all                # the four, one after the other

Three processes, as in production: this one plays the application (it commits `demo:change`-style
UPDATEs of one product each: a new name and `updated_at`, plain SQL); `python -m worker run`
is the worker (embedded: jobs on their cron, realtime listener; or, for `fleet`, a Celery worker
and `python -m worker listen` on Redis); `worker/testing/destination_server/`
is the destination, recording the wall-clock time it accepted each item. A change's latency is
the first acceptance of its product after its commit. Each change touches a distinct product.
Realtime paths: 200 changes, one every 0.1 s. Schedule: 200 changes spread evenly over 3 minutes
(so over three minute ticks) — the latency there is bounded by the cron period, not the work.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from feeds.context import Context

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "FEEDSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("FEEDSYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PATHS = {
    # name: (database, indexer mode, signalled by notify(), Celery fleet instead of embedded run)
    "pg-notify": ("postgresql", "realtime", False, False),
    "notify-api": (
        "postgresql",
        "realtime",
        True,
        False,
    ),  # the app's notify(), no trigger on products
    "sqlite-poll": ("sqlite", "realtime", False, False),
    "fleet": ("postgresql", "realtime", False, True),  # NOTIFY → listen → Redis → celery worker
    "schedule": ("postgresql", "schedule", False, False),
}
TARGET_S = {"realtime": 2.0, "schedule": 65.0}


@dataclass(frozen=True)
class Result:
    path: str
    latencies: list[float]
    missing: int
    spread_s: float

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'latency.db'}"
        return
    schema = f"latency_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()


def measure(path: str, changes: int, products: int, interval_s: float, workdir: Path) -> Result:
    from config.context import open_context
    from config.settings import load_settings
    from feeds.commerce import demo
    from feeds.definitions import IndexerMode
    from feeds.pipeline import indexer
    from feeds.tracking import realtime

    kind, mode, via_notify, fleet = PATHS[path]
    realtime_mode = mode == "realtime"
    spread_s = interval_s * changes if realtime_mode else 180.0
    with (
        database(kind, workdir) as url,
        process(
            [sys.executable, "-m", "worker.testing.destination_server", "--print-port", "--quiet",
             "--record-times"],
            dict(os.environ),
            workdir / f"{path}-destination.log",
        ) as destination,
    ):  # fmt: skip
        assert destination.stdout is not None
        port = int(destination.stdout.readline().split()[1])
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("FEEDSYNC_CONFIG", "BROKER_URL")},
            "DATABASE_URL": url,
            "EXPORT_URL": f"http://127.0.0.1:{port}",
            "LOG_FORMAT": "json",
        }
        settings = load_settings({k: env[k] for k in ("DATABASE_URL", "EXPORT_URL", "LOG_FORMAT")})
        ctx = open_context(settings)
        demo.seed(ctx.source, products, 1)
        indexer.reindex_all_invalid(ctx)  # the initial full sync, before the clock starts
        products_feed = ctx.registry.get("products")
        indexer.set_mode(ctx, products_feed, IndexerMode(mode))
        if via_notify:
            silence_product_triggers(ctx)
        chosen = random.Random(7).sample(range(1, products + 1), changes)
        with workers(path, fleet, env, workdir):
            committed: dict[str, float] = {}
            started = time.monotonic()
            for n, product in enumerate(chosen):
                due = started + n * spread_s / changes
                time.sleep(max(0.0, due - time.monotonic()))
                with ctx.source.begin() as conn:
                    conn.execute(
                        text("UPDATE products SET name = :name, updated_at = :now WHERE id = :id"),
                        {
                            "name": f"Latency probe {n}",
                            "now": datetime.now(UTC).replace(tzinfo=None),
                            "id": product,
                        },
                    )
                    if via_notify:
                        realtime.notify(ctx, products_feed, [product], conn=conn)
                committed[str(product)] = time.time()
            latencies = wait_for_acceptance(port, committed, 10.0 if realtime_mode else 75.0)
        ctx.close()
    return Result(path, latencies, changes - len(latencies), spread_s)


@contextmanager
def workers(path: str, fleet: bool, env: dict[str, str], workdir: Path) -> Iterator[None]:
    """The worker side, up and listening: the embedded run, or a Celery worker and the listener."""
    if not fleet:
        argv = [sys.executable, "-m", "worker", "run", "--no-api", "--metrics-port", "0"]
        with process(argv, env, workdir / f"{path}-worker.log") as worker:
            assert worker.stdout is not None
            while "indexers" not in (worker.stdout.readline() or "indexers"):
                pass  # the welcome lines: the worker is up
            time.sleep(1.0)
            yield
        return
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {**env, "BROKER_URL": REDIS_URL, "METRICS_PORT": "0"}
    celery = [sys.executable, "-m", "celery", "-A", "worker", "worker", "--concurrency", "2",
              "--without-gossip", "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
    listen = [sys.executable, "-m", "worker", "listen"]
    worker_log, listen_log = workdir / f"{path}-worker.log", workdir / f"{path}-listen.log"
    with process(celery, env, worker_log), process(listen, env, listen_log):
        deadline = time.monotonic() + 60
        while not (
            " ready." in worker_log.read_text() and "realtime.listening" in listen_log.read_text()
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"the fleet did not start; see {worker_log} and {listen_log}")
            time.sleep(0.2)
        time.sleep(2.0)  # the pool processes are up
        yield


def silence_product_triggers(ctx: Context) -> None:
    """notify-api: the products feed's triggers on `products` log nothing, so notify() alone signals.

    Their functions become no-ops under the same names, so the worker (which reinstalls missing
    triggers) leaves them be; the changelog's NOTIFY trigger stays.
    """
    from feeds.tracking import changelog

    feed = ctx.registry.get("products")
    with ctx.source.begin() as conn:
        for operation in changelog.OPERATIONS:
            name = changelog.trigger_name(feed, "products", operation)
            conn.exec_driver_sql(
                f'CREATE OR REPLACE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql '
                "AS $$ BEGIN RETURN NULL; END $$"
            )


def wait_for_acceptance(port: int, committed: dict[str, float], timeout_s: float) -> list[float]:
    """Latency of each change (first acceptance of its item after its commit), once all arrived."""
    deadline = time.monotonic() + timeout_s
    while True:
        accepted = httpx.get(f"http://127.0.0.1:{port}/_accepted_at?feed=products").json()
        latencies = []
        for item, at in committed.items():
            after = [t for t in accepted.get(item, []) if t >= at]
            if after:
                latencies.append(min(after) - at)
        if len(latencies) == len(committed) or time.monotonic() > deadline:
            return latencies
        time.sleep(0.5)


def report(result: Result) -> str:
    mode = PATHS[result.path][1]
    where = "celery" if PATHS[result.path][3] else "embedded"
    if not result.latencies:
        return f"{result.path:<12} no change arrived ({result.missing} missing)"
    p50, p99 = result.percentile(50), result.percentile(99)
    verdict = "ok" if p99 <= TARGET_S[mode] and not result.missing else "MISSED"
    return (
        f"{result.path:<12} {PATHS[result.path][0]:<10} {mode:<8} {where:<8} "
        f"{len(result.latencies):>4} changes over {result.spread_s:5.0f} s  "
        f"p50 {p50:7.3f} s  p99 {p99:7.3f} s  max {max(result.latencies):7.3f} s  "
        f"mean {statistics.fmean(result.latencies):7.3f} s  "
        f"missing {result.missing}  target p99 <= {TARGET_S[mode]:g} s: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", choices=list(PATHS), default="pg-notify")
    parser.add_argument("--all", action="store_true", help="measure every path")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between realtime changes"
    )
    args = parser.parse_args()
    from worker import logs

    logs.configure("json", logging.WARNING)  # this process's own logs: only problems
    paths = list(PATHS) if args.all else [args.path]
    print(f"# {args.changes} changes each, sample catalog of {args.products} products, "
          f"{os.cpu_count()} cores; worker: python -m worker run (embedded) or "
          "celery -A worker worker -c 2 + python -m worker listen (celery)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="feedsync-latency-") as tmp:
        for path in paths:
            result = measure(path, args.changes, args.products, args.interval, Path(tmp))
            print(report(result), flush=True)


if __name__ == "__main__":
    main()
