"""The fleet as ops run it: real `celery -A worker worker|beat|flower` processes on real Redis and
PostgreSQL, against the real protocol v1 destination.

Two beats and two workers: every job runs at most once per tick and never overlaps itself. A
full reindex of 12,000 products on a worker with no configuration at all. A worker process killed
mid-job: its task is delivered again and the job completes. A resync fanned out over two workers,
interrupted, then continued with only the ranges not done. A sync requested through the API, run
by a worker, failed when it fails. Flower's API lists the named tasks. Deselect with `-m "not fleet"`.

Settings are the defaults (STYLE rule 13) except where a comment says why a test needs another
value and why that value hides nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from config.settings import load_settings
from feeds.history import job_runs
from feeds.history.job_runs import JobStatus
from feeds.schedule import latest_fire
from feeds.state.database import create_db_engine
from feeds.state.tables import items, ranges
from worker.testing.destination_server import DestinationServer

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = 300


class Fleet:
    """Processes of one fleet (each in its own process group), their logs, and the shared env."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        settings = load_settings(env)
        from worker.app import create_app

        self.app = create_app(settings)
        self.db = create_db_engine(settings.database_url)

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")  # a restarted process adds to its log
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *argv],
            cwd=self.logs,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def worker(self, name: str, concurrency: int | None = 1) -> None:
        """A worker of `concurrency` pool processes (None: Celery's default, one per core)."""
        processes = () if concurrency is None else ("-c", str(concurrency))
        self.start(
            name,
            "worker",
            "--loglevel",
            "INFO",
            *processes,
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
        )

    def wait_for_workers(self, *names: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            replies = self.app.control.ping(timeout=0.5) or []
            answered = {name.split("@")[0] for reply in replies for name in reply}
            if set(names) <= answered:
                return
        pytest.fail(f"workers {names} did not start; logs: {self.tail(*names)}")

    def idle(self) -> bool:
        """No task waits in the queue or runs on a worker."""
        inspect = self.app.control.inspect(timeout=1.0)
        busy = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
        with self.app.connection_for_read() as conn:
            queued = conn.default_channel.client.llen("celery")
        return not queued and not any(busy)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tail(self, *names: str) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in names)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def close(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.stop(name, signal.SIGKILL, 5)
        self.app.close()
        self.db.dispose()


MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(
    postgres_url: str,
    redis_url: str,
    destination: DestinationServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MakeFleet]:
    fleets: list[Fleet] = []

    def make(config: str | None = None, products: int = PRODUCTS) -> Fleet:
        """A fleet on `products` sample products; `config` is its TOML file (None: no file at all)."""
        env = {
            "DATABASE_URL": postgres_url,
            "BROKER_URL": redis_url,
            "EXPORT_URL": destination.url,
            "LOG_FORMAT": "json",
        }
        if config is not None:
            path = tmp_path / "feedsync.toml"
            path.write_text(config)
            env["FEEDSYNC_CONFIG"] = str(path)
        for key in ("SOURCE_DATABASE_URL", "EXPORT_BATCH_SIZE", "FEEDSYNC_CONFIG", "EXPORT_TOKEN"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        from worker.cli import main

        assert main(["demo:seed", "--products", str(products), "--seed", "3"]) == 0
        fleet = Fleet(env, tmp_path)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def json_events(log: str) -> list[dict[str, Any]]:
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


# -- two beats, two workers ------------------------------------------------------------------

# Two-second ticks, so that 16 s hold eight of them: they change how often the jobs run, not how.
TIGHT = """
[jobs.indexer_update_all_views]
cron = "* * * * * */2"
[jobs.indexer_reindex_all_invalid]
cron = "* * * * * */2"
[jobs.products_feed_resend_failed_items]
cron = "* * * * * */2"
"""


def test_two_beats_and_two_workers_run_each_job_once_per_tick_never_overlapping(
    make_fleet: MakeFleet, destination: DestinationServer
) -> None:
    fleet = make_fleet(TIGHT)
    # The first full reindex (every indexer starts invalid) outlasts several 2-second ticks.
    destination.slow_next(12, 0.5)
    port = free_port()
    fleet.env["FLOWER_UNAUTHENTICATED_API"] = "true"
    fleet.start("flower", "flower", f"--port={port}", "--address=127.0.0.1")
    fleet.worker("w1", concurrency=2)
    fleet.worker("w2", concurrency=2)
    fleet.wait_for_workers("w1", "w2")
    fleet.start("beat1", "beat", "--loglevel", "INFO")
    fleet.start("beat2", "beat", "--loglevel", "INFO")
    time.sleep(16)
    fleet.stop("beat1")
    fleet.stop("beat2")
    time.sleep(3)  # the last ticks' tasks finish

    runs = job_runs.all_runs(fleet.db)
    # At most one record per job and tick: a second beat's task for a tick never runs the job.
    per_tick = Counter((r.job, r.tick) for r in runs if r.tick is not None)
    assert per_tick and max(per_tick.values()) == 1, per_tick.most_common(3)
    # A job never overlaps itself: each run starts after the previous one ended.
    for job in {r.job for r in runs}:
        ran = sorted(
            (r for r in runs if r.job == job and r.status is not JobStatus.SKIPPED),
            key=lambda r: r.started_at,
        )
        assert all(r.status is JobStatus.SUCCESS for r in ran), [(r.status, r.summary) for r in ran]
        for before, after in zip(ran, ran[1:], strict=False):
            assert before.finished_at is not None and before.finished_at <= after.started_at, job
    views = [r for r in runs if r.job == "indexer_update_all_views"]
    assert len(views) >= 4  # a tick every 2 s for ~16 s, with room for a slow machine
    # Ticks that came while the long first reindex ran were skipped, and said so.
    reindex = [r for r in runs if r.job == "indexer_reindex_all_invalid"]
    assert JobStatus.SKIPPED in {r.status for r in reindex}
    assert any(r.summary and "products: new 300," in r.summary for r in reindex)
    worker_events = json_events(fleet.log("w1")) + json_events(fleet.log("w2"))
    skips = Counter(e.get("reason") for e in worker_events if e.get("event") == "job.skipped")
    assert skips["tick already taken"] >= 3  # both beats sent the ticks
    assert skips["locked: the job is running elsewhere"] >= 1
    for beat in ("beat1", "beat2"):
        assert "Sending due task indexer_update_all_views" in fleet.log(beat)
    with fleet.db.connect() as conn:
        assert (
            conn.scalar(select(func.count()).select_from(items).where(items.c.feed == "products"))
            == PRODUCTS
        )
    # Flower saw the named tasks.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=10) as answer:
        tasks = json.load(answer)
    names = {task["name"] for task in tasks.values()}
    assert {
        "feedsync.indexer_update_all_views",
        "feedsync.indexer_reindex_all_invalid",
        "feedsync.products_feed_resend_failed_items",
    } <= names


# -- the default settings --------------------------------------------------------------------

LARGE = 12_000  # past 5 × collect_batch_size: outside a pool process, the reindex would fan out


def test_a_full_reindex_of_a_large_catalog_completes_on_a_worker_with_the_default_settings(
    make_fleet: MakeFleet, destination: DestinationServer
) -> None:
    """No FEEDSYNC_CONFIG, Celery's default concurrency: what an operator starts first."""
    fleet = make_fleet(None, products=LARGE)
    fleet.worker("w1", concurrency=None)
    fleet.wait_for_workers("w1")
    job = "indexer_reindex_all_invalid"
    tick = latest_fire("* * * * *", datetime.now(UTC))
    task = fleet.app.send_task(f"feedsync.{job}", kwargs={"tick": tick.isoformat()})
    answer = task.get(timeout=300)
    assert answer["verdict"] == "ran", answer
    assert task.state == "SUCCESS"
    [run] = job_runs.all_runs(fleet.db, job)
    assert run.status is JobStatus.SUCCESS, run.summary
    assert any(f"products: new {LARGE}," in line for line in answer["summary"]), answer
    with fleet.db.connect() as conn:
        statuses = set(conn.scalars(text("SELECT status FROM indexer_state")))
        products_run = conn.execute(
            text("SELECT status, rows_synced FROM sync_runs WHERE feed = 'products'")
        ).one()
        product_ids = {str(i) for i in conn.scalars(text("SELECT id FROM products"))}
    assert statuses == {"valid"}
    assert tuple(products_run) == ("success", LARGE)
    assert len(product_ids) == LARGE
    assert destination.accepted_ids("products") == product_ids
    # The choice is logged once per feed, with the reason.
    [chosen] = [
        e
        for e in json_events(fleet.log("w1"))
        if e.get("event") == "reindex.processes" and e.get("feed") == "products"
    ]
    assert chosen["processes"] == 1 and "Celery pool process" in chosen["reason"], chosen


# -- a worker process killed mid-job -----------------------------------------------------------

# A whole worker's task comes back only after the visibility timeout (6 h by default): that is
# how a lost host is detected, so a shorter one only shortens the wait. The locks of a process
# killed on this host are free at once: their TTLs stay the defaults.
KILLED = """
[fleet]
visibility_timeout_s = 10
"""


@pytest.mark.parametrize("killed", ["pool process", "whole worker"])
def test_a_job_whose_worker_is_killed_is_delivered_again_and_completes(
    make_fleet: MakeFleet, destination: DestinationServer, killed: str
) -> None:
    """kill -9 of the pool process: rejected on worker loss, delivered again at once; of the whole
    worker (main process and pool, as a lost host): delivered again after the visibility timeout."""
    fleet = make_fleet(KILLED)
    destination.slow_next(1000, 0.2)  # the reindex of every feed: ~10 requests, ~2 s
    fleet.worker("w1")
    fleet.worker("w2")
    fleet.wait_for_workers("w1", "w2")
    job = "indexer_reindex_all_invalid"
    tick = latest_fire("* * * * *", datetime.now(UTC))
    task_id = fleet.app.send_task(f"feedsync.{job}", kwargs={"tick": tick.isoformat()}).id

    def mid_job() -> job_runs.JobRun | None:
        with fleet.db.connect() as conn:
            done = conn.scalar(select(func.count()).select_from(items)) or 0
        running = [r for r in job_runs.all_runs(fleet.db, job) if r.status is JobStatus.RUNNING]
        return running[0] if running and done >= 60 else None

    victim = wait_until(mid_job, 60, "the reindex to be under way")
    pool_process = int(victim.worker.rsplit(":", 1)[1])
    if killed == "pool process":
        os.kill(pool_process, signal.SIGKILL)
    else:
        os.killpg(os.getpgid(pool_process), signal.SIGKILL)
    destination.slow_next(0, 0)

    def completed() -> list[job_runs.JobRun] | None:
        runs = job_runs.all_runs(fleet.db, job)
        return runs if runs[-1].status is JobStatus.SUCCESS else None

    runs = wait_until(completed, 60, f"the rerun to complete; {fleet.tail('w1', 'w2')}")
    assert [(r.task_id, r.status) for r in runs] == [
        (task_id, JobStatus.LOST),
        (task_id, JobStatus.SUCCESS),
    ]
    assert runs[1].worker != victim.worker
    assert runs[0].finished_at is not None and runs[0].finished_at <= runs[1].started_at
    with fleet.db.connect() as conn:
        statuses = set(conn.scalars(text("SELECT status FROM indexer_state")))
        products = conn.scalar(
            select(func.count()).select_from(items).where(items.c.feed == "products")
        )
    assert statuses == {"valid"} and products == PRODUCTS
    assert len(destination.accepted_ids("products")) == PRODUCTS


# -- fan-out resync --------------------------------------------------------------------------

FANOUT_PRODUCTS = 20_000  # 10 ranges of the default collect_batch_size, and the tail
# A killed command's feed lock is freed by its TTL only, by definition: 2 s instead of 120 s
# shortens the wait before --continue-resync.
FANOUT = """
[fleet]
feed_lock_ttl_s = 2
"""


def resync(fleet: Fleet, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "saas:resync", "--feed", "products", "--fleet", *options],
        cwd=fleet.logs,
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_fleet_resync_spreads_ranges_over_workers_and_continues_with_the_ranges_not_done(
    make_fleet: MakeFleet, destination: DestinationServer
) -> None:
    fleet = make_fleet(FANOUT, products=FANOUT_PRODUCTS)
    fleet.worker("w1")
    fleet.worker("w2")
    fleet.wait_for_workers("w1", "w2")
    first = resync(fleet)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"products: 2000/{FANOUT_PRODUCTS} entities")
    assert lines[-1].startswith(
        f"Resync of products success: new {FANOUT_PRODUCTS}, updated 0, deleted 0, skipped 0, "
        f"sent {FANOUT_PRODUCTS}, failed 0"
    )
    assert len(destination.accepted_ids("products")) == FANOUT_PRODUCTS
    for worker in ("w1", "w2"):  # both workers took ranges
        assert "feedsync.resync_range" in fleet.log(worker) and " succeeded in " in fleet.log(
            worker
        )
    with fleet.db.connect() as conn:
        full_syncs = conn.scalar(
            text(
                "SELECT count(*) FROM sync_runs WHERE feed = 'products' AND operation = 'full_sync'"
            )
        )
    assert full_syncs == 1

    # Interrupted (kill -9 of the command) after a few ranges, then continued.
    destination.slow_next(1000, 0.3)
    second = resync(fleet)

    def ranges_done() -> int:
        with fleet.db.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count()).select_from(ranges).where(ranges.c.done_at.is_not(None))
                )
                or 0
            )

    wait_until(lambda: ranges_done() >= 4, 60, "a few ranges to be done")
    second.kill()
    second.communicate()
    # The ranges it had sent finish on the workers (each takes longer than a poll interval).
    wait_until(lambda: fleet.idle() and fleet.idle(), 60, "the ranges in flight to finish")
    destination.slow_next(0, 0)
    with fleet.db.connect() as conn:
        left = conn.scalar(
            select(func.coalesce(func.sum(ranges.c.entities), 0)).where(ranges.c.done_at.is_(None))
        )
    assert 0 < left < FANOUT_PRODUCTS
    time.sleep(2.5)  # the killed command's feed lock expires (feed_lock_ttl_s = 2)
    third = resync(fleet, "--continue-resync")
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert f"sent {left}, failed 0" in out.splitlines()[-1]
    with fleet.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ranges)) == 0


def test_a_warm_shutdown_stops_the_job_after_its_batch_and_another_worker_finishes_it(
    make_fleet: MakeFleet, destination: DestinationServer
) -> None:
    fleet = make_fleet(None, products=LARGE)
    destination.slow_next(1000, 0.2)
    fleet.worker("w1")
    fleet.worker("w2")
    fleet.wait_for_workers("w1", "w2")
    job = "indexer_reindex_all_invalid"
    tick = latest_fire("* * * * *", datetime.now(UTC))
    task_id = fleet.app.send_task(f"feedsync.{job}", kwargs={"tick": tick.isoformat()}).id
    running = wait_until(
        lambda: [r for r in job_runs.all_runs(fleet.db, job) if r.status is JobStatus.RUNNING],
        60,
        "the reindex to start",
    )[0]
    time.sleep(1.0)  # a few batches in
    pool_process = running.worker.rsplit(":", 1)[1]
    main_process = int(Path(f"/proc/{pool_process}/stat").read_text().split(")")[1].split()[1])
    stopping = next(n for n, p in fleet.procs.items() if p.pid == main_process)
    os.kill(main_process, signal.SIGTERM)  # warm shutdown, as `docker stop` does
    assert fleet.procs[stopping].wait(30) == 0
    destination.slow_next(0, 0)

    def completed() -> list[job_runs.JobRun] | None:
        runs = job_runs.all_runs(fleet.db, job)
        return runs if runs[-1].status is JobStatus.SUCCESS else None

    runs = wait_until(completed, 60, f"another worker to finish it; {fleet.tail('w1', 'w2')}")
    assert [(r.task_id, r.status) for r in runs] == [
        (task_id, JobStatus.STOPPED),
        (task_id, JobStatus.SUCCESS),
    ]
    assert runs[0].summary == "Stopped between two batches: the process was asked to stop."
    with fleet.db.connect() as conn:
        statuses = set(conn.scalars(text("SELECT status FROM indexer_state")))
    assert statuses == {"valid"}
    assert len(destination.accepted_ids("products")) == LARGE


def test_a_sync_requested_through_the_api_runs_on_a_fleet_worker(
    make_fleet: MakeFleet, destination: DestinationServer
) -> None:
    from fastapi.testclient import TestClient

    from feeds.history.integrations import integration_id
    from worker.api.apikeys import create_key
    from worker.api.app import create_app
    from worker.sync_requests import trigger_for

    fleet = make_fleet()
    fleet.worker("w1")
    fleet.wait_for_workers("w1")
    settings = load_settings(fleet.env)
    _, raw = create_key(fleet.db, "ops", ["cdi.integration_sync", "cdi.integration_job_status"])
    headers = {"Authorization": f"Bearer {raw}"}
    products = integration_id("products", settings.destination("products"))
    with TestClient(create_app(settings, trigger=trigger_for(settings))) as client:
        queued = client.post(f"/cdi/integrations/{products}/sync", headers=headers)
        assert queued.status_code == 202, queued.text
        again = client.post(f"/cdi/integrations/{products}/sync", headers=headers)
        assert again.status_code == 429
        assert again.json() == {"message": "Another job is in progress"}

        def finished() -> dict[str, Any] | None:
            status = client.get(f"/cdi/integrations/{products}/job_sync_status", headers=headers)
            results = status.json()["results"]
            return results[0] if results and results[0]["job_status"] == "success" else None

        job = wait_until(finished, 60, f"the requested sync; worker log: {fleet.tail('w1')}")
        assert job["rows_synced"] == PRODUCTS
        # The worker ran it (not the API process), and freed the request: a new one is accepted.
        assert "feedsync.integration_sync" in fleet.log("w1")
        assert client.post(f"/cdi/integrations/{products}/sync", headers=headers).status_code == 202
    assert len(destination.accepted_ids("products")) == PRODUCTS


def test_a_sync_requested_through_the_api_that_fails_is_a_failed_celery_task(
    make_fleet: MakeFleet, destination: DestinationServer
) -> None:
    from fastapi.testclient import TestClient

    from feeds.history.integrations import integration_id
    from worker.api.apikeys import create_key
    from worker.api.app import create_app
    from worker.sync_requests import FleetSync

    fleet = make_fleet()
    destination.fail_next(100_000, status=401)  # the destination refuses our token
    fleet.worker("w1")
    fleet.wait_for_workers("w1")
    settings = load_settings(fleet.env)
    _, raw = create_key(fleet.db, "ops", ["cdi.integration_sync", "cdi.integration_job_status"])
    headers = {"Authorization": f"Bearer {raw}"}
    products = integration_id("products", settings.destination("products"))
    queued: list[Any] = []

    def send_task(*args: Any, **kwargs: Any) -> Any:  # the fleet's trigger, keeping the result
        queued.append(fleet.app.send_task(*args, **kwargs))
        return queued[-1]

    with TestClient(create_app(settings, trigger=FleetSync(send_task))) as client:
        assert client.post(f"/cdi/integrations/{products}/sync", headers=headers).status_code == 202
        [task] = queued
        wait_until(task.ready, 60, f"the requested sync; worker log: {fleet.tail('w1')}")
        assert task.state == "FAILURE"
        assert "The requested sync of products ended config_error" in str(task.result)
        status = client.get(f"/cdi/integrations/{products}/job_sync_status", headers=headers)
        assert status.json()["results"][0]["job_status"] == "config_error"
        # The request lock was freed before the task failed: a new request is accepted.
        assert client.post(f"/cdi/integrations/{products}/sync", headers=headers).status_code == 202
    assert destination.accepted_ids("products") == set()
