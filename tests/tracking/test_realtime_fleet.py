"""Realtime mode in the fleet, with real processes: PostgreSQL NOTIFY → `python -m worker listen` →
Redis → a Celery worker → the destination; and the worker's Prometheus endpoint summing its pool
processes' counters. Needs PostgreSQL and Redis (CI has both)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feeds.context import Context
from feeds.definitions import IndexerMode
from feeds.pipeline import indexer
from tests.conftest import library_context
from tests.tracking.test_realtime import FAST, sql, title_of, wait_for
from tests.worker.test_metrics import scrape, value

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fleet_env(
    postgres_url: str, redis_url: str, export_dir: Path, tmp_path: Path
) -> dict[str, str]:
    ctx = library_context(postgres_url, f"file://{export_dir}", tmp_path, books=6)
    indexer.reindex(ctx, ctx.registry.get("books"))
    indexer.set_mode(ctx, ctx.registry.get("books"), IndexerMode.REALTIME)
    ctx.close()
    # The processes run on the default settings: only the library feeds, whose tables these are.
    (tmp_path / "library.toml").write_text(
        'feed_modules = ["tests.library_feeds"]\nbuiltin_feeds = false\n'
    )
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "EXPORT_URL": f"file://{export_dir}",
        "FEEDSYNC_CONFIG": str(tmp_path / "library.toml"),
        "BROKER_URL": redis_url,
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    return env


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


@pytest.mark.postgres
def test_a_change_is_notified_enqueued_and_synced_by_a_celery_worker_within_seconds(
    fleet_env: dict[str, str], export_dir: Path, tmp_path: Path, library_ctx: Context
) -> None:
    port = int(fleet_env["METRICS_PORT"])
    worker = start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        fleet_env,
        tmp_path / "worker.log",
    )
    listener = start([sys.executable, "-m", "worker", "listen"], fleet_env, tmp_path / "listen.log")
    try:
        wait_for(lambda: _serves(port), timeout=30)
        wait_for(lambda: b"realtime.listening" in (tmp_path / "listen.log").read_bytes(), 30)
        time.sleep(3)  # the worker's pool processes are up and consuming
        sql(library_ctx, "UPDATE books SET title = 'Through the fleet' WHERE book_no = 2")
        took = wait_for(lambda: title_of(export_dir, 2) == "Through the fleet", timeout=10)
        assert took < FAST
        # The pool process counts the run right after recording it: scrape until it shows (the
        # counter has no sample before its first count, and `value` raises rather than wait).
        sent = ("feedsync_items_sent_total", (("feed", "books"),))
        wait_for(lambda: sent in scrape(port), 5)
        samples = scrape(port)
        assert value(samples, "feedsync_items_sent_total", feed="books") == 1
        assert value(samples, "feedsync_job_duration_seconds_count", job="realtime_sync") == 1
        assert value(samples, "feedsync_backlog", feed="books") == 0
    finally:
        codes = stop(listener), stop(worker)
    logs = (tmp_path / "listen.log").read_text() + (tmp_path / "worker.log").read_text()
    assert codes == (0, 0), logs
    assert "realtime.enqueued" in logs
    events = [
        json.loads(line)
        for line in (tmp_path / "worker.log").read_text().splitlines()
        if line.startswith("{")
    ]
    [synced] = [e for e in events if e["event"] == "realtime.synced"]
    assert (synced["job"], synced["feed"], synced["updated"]) == ("realtime_sync", "books", 1)
    assert synced["task_id"] and synced["run_id"]  # the Celery task id and the sync run, bound


def _serves(port: int) -> bool:
    try:
        scrape(port)
        return True
    except Exception:
        return False


@pytest.fixture
def library_ctx(fleet_env: dict[str, str], export_dir: Path, tmp_path: Path) -> Iterator[Context]:
    """A context on the same schema as the processes (the library tables exist already)."""
    from config.context import open_context
    from config.settings import load_settings

    ctx = open_context(
        load_settings({k: fleet_env[k] for k in ("DATABASE_URL", "EXPORT_URL", "FEEDSYNC_CONFIG")})
    )
    yield ctx
    ctx.close()
