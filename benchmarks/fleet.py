"""Fleet benchmark: items/s of a full resync fanned out over 1 and over 2 Celery worker processes.

    python benchmarks/fleet.py --products 100000 [--workers 1,2] [--redis redis://127.0.0.1:6379/12]

Seeds the sample catalog in a PostgreSQL schema of its own, starts the test destination
(`python -m worker.testing.destination_server`) as a separate process, then for each worker count starts
that many `celery -A worker worker -c 1` processes and times `saas:resync --feed products --fleet`
(the command's own wall time, from start to its summary line). For comparison it also times the
same resync without --fleet (one process; the reindex's own process pool as configured). The
Redis database given is flushed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.export import Destination  # noqa: E402

POSTGRES_URL = os.environ.get(
    "FEEDSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = "feedsync_bench_fleet"


def schema_url() -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{SCHEMA}"


def cli(env: dict[str, str], *argv: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "worker", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed: {done.stderr[-2000:]}")
    return seconds, done.stdout.strip().splitlines()[-1]


def start_workers(env: dict[str, str], count: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(count):
        log = (logs / f"worker{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker", "worker", "-c", "1"]
                + ["-n", f"bench{n}@%h", "--without-mingle", "--without-gossip"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    from config.settings import load_settings
    from worker.app import create_app

    app = create_app(load_settings(env))
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5) or []) < count:
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not start")
    except BaseException:
        stop_workers(procs)
        raise
    finally:
        app.close()
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def report(label: str, wall: float, summary: str) -> None:
    """The resync's own time (from its summary line) and items/s, and the command's wall time."""
    sent = int(re.search(r"sent (\d+)", summary).group(1))  # type: ignore[union-attr]
    seconds = float(re.search(r" in ([\d.]+) s", summary).group(1))  # type: ignore[union-attr]
    print(
        f"{label:<10} resync {seconds:6.1f} s {sent / seconds:>8,.0f} items/s "
        f"(command {wall:5.1f} s)  {summary.split(' (run')[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="worker process counts to time")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="flushed first")
    parser.add_argument("--batch-size", type=int, default=1000, help="EXPORT_BATCH_SIZE")
    args = parser.parse_args()
    from redis import Redis

    Redis.from_url(args.redis).flushdb()
    workdir = Path(tempfile.mkdtemp(prefix="feedsync-fleet-bench-"))
    destination = Destination("--quiet")
    env = {
        **os.environ,
        "DATABASE_URL": schema_url(),
        "BROKER_URL": args.redis,
        "EXPORT_URL": destination.url,
        "EXPORT_BATCH_SIZE": str(args.batch_size),
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("FEEDSYNC_CONFIG", None)
    try:
        seeding, _ = cli(env, "demo:seed", "--products", str(args.products))
        print(f"seeded {args.products:,} products in {seeding:.1f} s (PostgreSQL, {SCHEMA})")
        seconds, summary = cli(env, "saas:resync", "--feed", "products")
        report("no fleet", seconds, summary)
        for count in (int(n) for n in args.workers.split(",")):
            procs = start_workers(env, count, workdir)
            try:
                seconds, summary = cli(env, "saas:resync", "--feed", "products", "--fleet")
            finally:
                stop_workers(procs)
            report(f"{count} worker{'s' if count > 1 else ''}", seconds, summary)
    finally:
        destination.stop()
        Redis.from_url(args.redis).flushdb()


if __name__ == "__main__":
    main()
