"""Fleet coordination without Celery: job locks (fakeredis and real Redis), tick claims, the beat
schedule, warm-shutdown stops, job-run records, `cron:list`, and the fan-out resync's ranges."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import structlog
from redis import Redis
from sqlalchemy import func, select

from config.context import open_context
from config.settings import load_settings
from feeds.context import Context
from feeds.errors import StopRequested
from feeds.history import job_runs
from feeds.history.job_runs import JobStatus
from feeds.history.runs import Counts
from feeds.pipeline import indexer, stopping
from feeds.pipeline import ranges as resync_ranges
from feeds.pipeline.indexer import Batch
from feeds.pipeline.resync import ResyncRequest, checkpoint, resync
from feeds.pipeline.run import Run
from feeds.schedule import latest_fire
from feeds.state import tables
from feeds.state.locks import MACHINE
from feeds.state.tables import items
from tests.conftest import library_context, make_settings
from worker import logs as worker_logs
from worker.cli import main
from worker.fleet import Verdict, run_scheduled
from worker.fleet_lock import FleetLock, Heartbeat, held, token_for
from worker.jobs import run_job
from worker.testing.destination_server import DestinationServer


@pytest.fixture(params=["fakeredis", "redis"])
def redis(request: pytest.FixtureRequest) -> Iterator[Redis]:
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis()
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    client.close()


# -- job locks -------------------------------------------------------------------------------


def test_a_job_lock_has_one_owner_until_it_is_released(redis: Redis) -> None:
    first = FleetLock(redis, "job", "task-1", ttl_s=30)
    second = FleetLock(redis, "job", "task-2", ttl_s=30)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == "task-1"
    assert not second.release()  # not its lock: left alone
    assert first.holder() == "task-1"
    assert first.release()
    assert second.acquire()


def test_a_job_lock_expires_when_its_worker_stops_renewing_it(redis: Redis) -> None:
    assert FleetLock(redis, "job", "dead", ttl_s=0.3).acquire()
    other = FleetLock(redis, "job", "alive", ttl_s=30)
    assert not other.acquire()
    time.sleep(0.5)
    assert other.acquire()


def test_the_heartbeat_keeps_a_job_lock_past_its_ttl_then_frees_it(redis: Redis) -> None:
    lock = FleetLock(redis, "job", "long", ttl_s=0.6)
    assert lock.acquire()
    with held(lock) as heartbeat:
        time.sleep(1.5)  # 2.5 TTLs
        assert not FleetLock(redis, "job", "other", ttl_s=30).acquire()
        assert not heartbeat.lost.is_set()
    assert lock.holder() is None


def dead_pid() -> int:
    """The pid of a process of this machine that has ended (kill -9, say)."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def test_a_job_lock_whose_holder_was_killed_on_this_machine_is_free_at_once(redis: Redis) -> None:
    killed = FleetLock(redis, "job", f"{MACHINE}:{dead_pid()}:task-1", ttl_s=30)
    assert killed.acquire()
    alive = FleetLock(redis, "other-job", f"{MACHINE}:{os.getpid()}:task-2", ttl_s=30)
    assert alive.acquire()
    elsewhere = FleetLock(redis, "third-job", f"lost-host@1:{dead_pid()}:task-3", ttl_s=30)
    assert elsewhere.acquire()
    with structlog.testing.capture_logs() as logs:
        assert FleetLock(redis, "job", token_for("next"), ttl_s=30).acquire()  # no TTL to wait for
        assert not FleetLock(redis, "other-job", token_for("next"), ttl_s=30).acquire()
        assert not FleetLock(redis, "third-job", token_for("next"), ttl_s=30).acquire()  # unknown
    assert killed.holder() == token_for("next")
    assert not killed.renew()  # the dead holder's token no longer holds it
    assert [e["event"] for e in logs] == ["fleet_lock.taken_over"]


def test_a_holder_learns_it_lost_a_lock_that_expired_and_was_taken(redis: Redis) -> None:
    lock = FleetLock(redis, "job", "slow", ttl_s=0.3)
    assert lock.acquire()
    time.sleep(0.4)
    assert FleetLock(redis, "job", "next", ttl_s=30).acquire()
    heartbeat = Heartbeat(lock, interval_s=0.05).start()
    assert heartbeat.lost.wait(2)
    heartbeat.stop()
    assert lock.holder() == "next"


def test_a_holder_that_cannot_reach_redis_for_a_ttl_learns_it_lost_the_lock() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    heartbeat = Heartbeat(FleetLock(unreachable, "job", "cut-off", ttl_s=0.3), interval_s=0.05)
    heartbeat.start()
    assert heartbeat.lost.wait(15)  # the server expired it meanwhile: the job must stop
    heartbeat.stop()


# -- one run per tick, one run at a time -------------------------------------------------------

JOB = "sync_history_cleanup"  # quick and needs no source table


def _tick(now: datetime) -> datetime:
    return latest_fire("15 * * * *", now)


def test_the_tasks_two_beats_send_for_one_tick_run_the_job_once(ctx: Context, redis: Redis) -> None:
    tick = _tick(datetime.now(UTC))
    first = run_scheduled(ctx, redis, JOB, task_id="beat-1", tick=tick)
    second = run_scheduled(ctx, redis, JOB, task_id="beat-2", tick=tick)
    assert (first.verdict, second.verdict) == (Verdict.RAN, Verdict.DUPLICATE)
    runs = job_runs.all_runs(ctx.db, JOB)
    assert [(r.status, r.task_id, r.tick) for r in runs] == [
        (JobStatus.SUCCESS, "beat-1", tick.replace(tzinfo=None))
    ]
    assert runs[0].summary and runs[0].summary.startswith("removed 0 sync runs")


def test_a_backlog_of_missed_ticks_runs_the_job_once(ctx: Context, redis: Redis) -> None:
    now = datetime.now(UTC)
    ticks = [_tick(now) - timedelta(hours=h) for h in (3, 2, 1, 0)]  # a worker was down 3 hours
    verdicts = [
        run_scheduled(ctx, redis, JOB, task_id=f"t{n}", tick=t, now=now).verdict
        for n, t in enumerate(ticks)
    ]
    # The first waiting task runs the job; that run covers the later ticks.
    assert verdicts == [Verdict.RAN] + [Verdict.SUPERSEDED] * 3
    assert [r.status for r in job_runs.all_runs(ctx.db, JOB)] == [JobStatus.SUCCESS]


def test_a_late_tick_with_no_later_task_still_runs(ctx: Context, redis: Redis) -> None:
    # Beat was down after sending it (or the queue was slow): no later task will come.
    now = datetime.now(UTC)
    late = _tick(now) - timedelta(hours=1)
    outcome = run_scheduled(ctx, redis, JOB, task_id="late", tick=late, now=now)
    assert outcome.verdict is Verdict.RAN
    assert [r.status for r in job_runs.all_runs(ctx.db, JOB)] == [JobStatus.SUCCESS]


def test_a_tick_finding_the_job_running_elsewhere_is_skipped_logged_and_recorded(
    ctx: Context, redis: Redis
) -> None:
    running = FleetLock(redis, JOB, "the-running-one", ttl_s=30)
    assert running.acquire()
    worker_logs.configure(
        "json", logging.INFO
    )  # as a worker logs (a CLI test may have quietened it)
    with structlog.testing.capture_logs() as logs:
        outcome = run_scheduled(ctx, redis, JOB, task_id="next-tick", tick=_tick(datetime.now(UTC)))
    assert outcome.verdict is Verdict.LOCKED
    skipped = [e for e in logs if e["event"] == "job.skipped"]
    assert skipped and skipped[0]["job"] == JOB and "locked" in skipped[0]["reason"]
    assert [(r.status, r.task_id) for r in job_runs.all_runs(ctx.db, JOB)] == [
        (JobStatus.SKIPPED, "next-tick")
    ]
    assert running.holder() == "the-running-one"


def test_a_second_delivery_waits_for_its_dead_runs_locks_then_runs_again(
    db_url: str, export_dir: Path, tmp_path: Path, redis: Redis
) -> None:
    config = tmp_path / "feedsync.toml"
    config.write_text("[fleet]\nfeed_lock_ttl_s = 1\n")
    ctx = open_context(make_settings(db_url, export_dir, config))
    tick = _tick(datetime.now(UTC))
    # The first delivery claimed the tick, took the lock, recorded its start, and its worker died.
    assert run_scheduled(ctx, redis, JOB, task_id="task-x", tick=tick).verdict is Verdict.RAN
    job_runs.start(ctx.db, JOB, tick=tick, task_id="task-x")
    assert FleetLock(redis, JOB, "task-x", ttl_s=2.5).acquire()
    # Its feed locks expire within their TTL (1 s) of its death: the job would skip those feeds.
    waiting = run_scheduled(ctx, redis, JOB, task_id="task-x", tick=tick)
    assert waiting.verdict is Verdict.WAIT and 1.0 < waiting.retry_in_s <= 1.5
    time.sleep(waiting.retry_in_s)
    # Then for its job lock.
    waiting = run_scheduled(ctx, redis, JOB, task_id="task-x", tick=tick)
    assert waiting.verdict is Verdict.WAIT and 0 < waiting.retry_in_s <= 1.5
    time.sleep(waiting.retry_in_s)
    assert run_scheduled(ctx, redis, JOB, task_id="task-x", tick=tick).verdict is Verdict.RAN
    assert [r.status for r in job_runs.all_runs(ctx.db, JOB)] == [
        JobStatus.SUCCESS,
        JobStatus.LOST,
        JobStatus.SUCCESS,
    ]
    ctx.close()


def test_a_second_delivery_of_a_task_killed_on_this_machine_runs_at_once(
    ctx: Context, redis: Redis
) -> None:
    """A pool process killed mid-job: its locks are free at once, on the default TTLs."""
    tick = _tick(datetime.now(UTC))
    assert run_scheduled(ctx, redis, JOB, task_id="task-x", tick=tick).verdict is Verdict.RAN
    killed = f"{MACHINE}:{dead_pid()}"
    job_runs.start(ctx.db, JOB, tick=tick, task_id="task-x")
    with ctx.db.begin() as conn:
        conn.execute(
            tables.job_runs.update()
            .where(tables.job_runs.c.status == JobStatus.RUNNING)
            .values(worker=killed)
        )
    assert FleetLock(redis, JOB, f"{killed}:task-x", ttl_s=60).acquire()
    assert run_scheduled(ctx, redis, JOB, task_id="task-x", tick=tick).verdict is Verdict.RAN
    assert [r.status for r in job_runs.all_runs(ctx.db, JOB)] == [
        JobStatus.SUCCESS,
        JobStatus.LOST,
        JobStatus.SUCCESS,
    ]


def test_the_next_tick_takes_the_job_lock_of_a_worker_killed_on_this_machine(
    ctx: Context, redis: Redis
) -> None:
    assert FleetLock(redis, JOB, f"{MACHINE}:{dead_pid()}:killed-task", ttl_s=60).acquire()
    outcome = run_scheduled(ctx, redis, JOB, task_id="next-tick", tick=_tick(datetime.now(UTC)))
    assert outcome.verdict is Verdict.RAN


def test_a_task_holding_the_job_lock_marks_a_dead_hosts_running_job_lost(
    ctx: Context, redis: Redis
) -> None:
    """A host lost mid-job leaves its row `running`; the next task that holds the lock closes it."""
    job_runs.start(ctx.db, JOB, tick=_tick(datetime.now(UTC)), task_id="on-a-lost-host")
    with ctx.db.begin() as conn:
        conn.execute(tables.job_runs.update().values(worker="lost-host@1:4242"))
    later = _tick(datetime.now(UTC)) + timedelta(minutes=1)
    assert run_scheduled(ctx, redis, JOB, task_id="next", tick=later).verdict is Verdict.RAN
    assert [(r.task_id, r.status) for r in job_runs.all_runs(ctx.db, JOB)] == [
        ("on-a-lost-host", JobStatus.LOST),
        ("next", JobStatus.SUCCESS),
    ]


def test_cron_list_shows_a_job_of_a_killed_process_as_lost_not_running(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    assert main(["cron:list"]) == 0  # creates the database
    from feeds.state.database import create_db_engine

    engine = create_db_engine(cli_env["DATABASE_URL"])
    job_runs.start(engine, JOB)
    with engine.begin() as conn:
        conn.execute(tables.job_runs.update().values(worker=f"{MACHINE}:{killed.pid}"))
    engine.dispose()
    capsys.readouterr()
    assert main(["cron:list"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if f"| {JOB} " in line]
    assert [c.strip() for c in row.split("|")[1:-1]][3] == "lost"


# -- warm shutdown ---------------------------------------------------------------------------


def test_a_warm_shutdown_stops_a_reindex_between_batches_and_the_rerun_completes(
    db_url: str, tmp_path: Path
) -> None:
    ctx = library_context(db_url, f"file://{tmp_path / 'export'}", tmp_path, books=12)
    batches: list[int] = []

    def after_first_batch() -> bool:
        batches.append(1)
        return len(batches) >= 1

    stopping.install(after_first_batch)
    try:
        with pytest.raises(StopRequested):
            run_job(ctx, "indexer_reindex_all_invalid")
    finally:
        stopping.remove(after_first_batch)
    with ctx.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(items)) == 6  # one batch, committed
    assert job_runs.all_runs(ctx.db)[-1].status is JobStatus.STOPPED
    run_job(ctx, "indexer_reindex_all_invalid")
    with ctx.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(items)) == 12
    assert job_runs.all_runs(ctx.db)[-1].status is JobStatus.SUCCESS
    ctx.close()


def test_a_warm_shutdown_stops_the_legacy_exporter_between_batches_and_the_rerun_sends_the_rest(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(
        db_url, destination.url, tmp_path, books=12, extra='export_mode = "legacy"\n'
    )
    run_job(ctx, "indexer_reindex_all_invalid")  # collects 12 payloads, sends nothing
    assert destination.accepted_ids("books") == set()

    def always() -> bool:
        return True

    stopping.install(always)
    try:
        with pytest.raises(StopRequested):
            run_job(ctx, "saas_data_exporter")
    finally:
        stopping.remove(always)
    assert len(destination.accepted_ids("books")) == 6  # one collection round, then the stop
    with ctx.db.connect() as conn:
        sent = conn.scalar(select(func.count()).select_from(items).where(items.c.status == 200))
    assert sent == 6  # recorded as sent: the rerun does not send them again
    assert job_runs.all_runs(ctx.db)[-1].status is JobStatus.STOPPED
    run_job(ctx, "saas_data_exporter")
    assert len(destination.accepted_ids("books")) == 12
    assert len(destination.requests) == 4  # 12 items in batches of 3, none resent
    ctx.close()


# -- beat schedule ---------------------------------------------------------------------------


def test_every_job_is_a_beat_entry_with_its_task_and_cron(tmp_path: Path) -> None:
    from worker.beat import CronSchedule, beat_schedule

    config = tmp_path / "jobs.toml"
    config.write_text('[jobs.indexer_update_all_views]\ncron = "*/2 * * * *"\n')
    settings = load_settings({"FEEDSYNC_CONFIG": str(config)})
    schedule = beat_schedule(settings)
    assert (
        "indexer_update_all_views" in schedule and "products_feed_resend_failed_items" in schedule
    )
    assert all(entry["task"] == f"feedsync.{job}" for job, entry in schedule.items())
    assert schedule["indexer_update_all_views"]["schedule"] == CronSchedule("*/2 * * * *")
    assert schedule["sync_history_cleanup"]["schedule"] == CronSchedule("15 * * * *")


def test_beat_sends_once_after_downtime_then_waits_for_the_next_fire_time() -> None:
    from worker.beat import CronSchedule

    now = datetime(2026, 11, 23, 10, 30, 20, tzinfo=UTC)
    schedule = CronSchedule("* * * * *", nowfun=lambda: now)
    due, next_in = schedule.is_due(now - timedelta(minutes=47))  # beat was down 47 minutes
    assert due and next_in == 40.0
    assert schedule.tick() == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    due, next_in = schedule.is_due(now)  # just sent
    assert not due and next_in == 40.0


# -- cron:list -------------------------------------------------------------------------------


def test_cron_list_shows_each_jobs_cron_last_run_status_and_next_run(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cron:run", JOB]) == 0
    capsys.readouterr()
    assert main(["cron:list"]) == 0
    out = capsys.readouterr().out
    header = [c.strip() for c in out.splitlines()[1].split("|")[1:-1]]
    assert header == ["Job", "Cron", "Last Run", "Status", "Next Run", "Group"]
    rows = {
        cells[0]: cells
        for line in out.splitlines()[3:-1]
        if (cells := [c.strip() for c in line.split("|")[1:-1]])
    }
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    _, cron, last, status, next_run, group = rows[JOB]
    assert (cron, status, group) == ("15 * * * *", "success", "sync_history")
    assert re.fullmatch(stamp, last) and re.fullmatch(stamp, next_run)
    assert next_run.endswith(":15:00")
    assert rows["indexer_update_all_views"][2:4] == ["never", ""]
    assert {f"{feed}_feed_resend_failed_items" for feed in ("products", "orders")} <= set(rows)


# -- fan-out resync, without Celery ----------------------------------------------------------


def _mapper(ctx: Context, order: str, stop_after: int | None = None):  # type: ignore[no-untyped-def]
    """Processes the ranges here, in reverse order (as a fleet may), optionally 'dying' midway."""
    seen: list[int | None] = []

    def mapper(run: Run, batches: Iterable[Batch]) -> Iterator[tuple[Batch, Counts]]:
        todo = list(batches)
        for batch in reversed(todo) if order == "reverse" else todo:
            if stop_after is not None and len(seen) == stop_after:
                raise KeyboardInterrupt
            seen.append(batch.seq)
            yield batch, resync_ranges.process_range(ctx, run, batch)  # adds to `run` itself

    return mapper, seen


def test_a_fleet_resync_sends_every_range_in_any_order_and_records_one_run(
    db_url: str, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    ctx = library_context(db_url, f"file://{export}", tmp_path, books=20)
    mapper, seen = _mapper(ctx, "reverse")
    outcome = resync(ctx, ctx.registry.get("books"), ResyncRequest(fleet=True), mapper=mapper)
    assert outcome.counts.rows_synced == 20 and outcome.counts.new == 20
    assert seen == [4, 3, 2, 1, 0]  # 20 books in ranges of 6, then the tail past the last key
    assert not resync_ranges.planned(ctx, ctx.registry.get("books"))
    sent = (export / "books.jsonl").read_text()
    assert {f'"book-{n}"' for n in range(1, 21)} <= set(re.findall(r'"book-\d+"', sent))
    ctx.close()


def test_a_continued_fleet_resync_sends_only_the_ranges_not_done(
    db_url: str, tmp_path: Path
) -> None:
    ctx = library_context(db_url, f"file://{tmp_path / 'export'}", tmp_path, books=20)
    books = ctx.registry.get("books")
    mapper, seen = _mapper(ctx, "reverse", stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        resync(ctx, books, ResyncRequest(fleet=True), mapper=mapper)
    assert seen == [4, 3] and checkpoint(ctx, books) is not None
    assert [b.seq for b in resync_ranges.pending(ctx, books)] == [0, 1, 2]
    mapper, seen = _mapper(ctx, "forward")
    outcome = resync(ctx, books, ResyncRequest(fleet=True, continue_resync=True), mapper=mapper)
    assert seen == [0, 1, 2]
    assert outcome.counts.rows_synced == 18  # books 1-18; 19 and 20 were sent before the stop
    assert checkpoint(ctx, books) is None and not resync_ranges.planned(ctx, books)
    ctx.close()


def test_a_range_delivered_again_resends_only_what_the_resync_has_not_had_accepted(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    """Its worker died after the destination accepted part of it (here: all of it, before the
    ack): the rerun of the range sends nothing twice."""
    ctx = library_context(db_url, destination.url, tmp_path, books=20)
    books = ctx.registry.get("books")
    indexer.reindex(ctx, books)  # what a resync resends: books the destination holds already
    before = destination.count("books")

    def redelivering(run: Run, batches: Iterable[Batch]) -> Iterator[tuple[Batch, Counts]]:
        for batch in batches:
            if batch.seq == 1:
                resync_ranges.process_range(ctx, run, batch)  # the delivery whose worker died
            yield batch, resync_ranges.process_range(ctx, run, batch)

    resync(ctx, books, ResyncRequest(fleet=True), mapper=redelivering)
    assert destination.count("books") - before == 20  # every book once, none twice
    ctx.close()


# -- refused at start ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "config", "env", "sentence"),
    [
        (
            "beat",
            '[jobs.indexer_update_all_views]\ncron = "every minute"\n',
            {"BROKER_URL": "redis://127.0.0.1:6379/11"},
            "jobs.indexer_update_all_views.cron = 'every minute' is not accepted: 'every minute' is not a cron expression; accepted: five fields",
        ),
        (
            "worker",
            "",
            {},
            "BROKER_URL is not set; the Celery fleet needs one, such as redis://127.0.0.1:6379/0",
        ),
    ],
)
def test_celery_refuses_a_bad_setting_at_start_with_one_sentence(
    tmp_path: Path, program: str, config: str, env: dict[str, str], sentence: str
) -> None:
    path = tmp_path / "feedsync.toml"
    path.write_text(config)
    environment = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", program],
        cwd=tmp_path,
        env={**environment, **env, "FEEDSYNC_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and sentence in lines[0], done.stderr


def test_sync_history_cleanup_drops_job_runs_past_the_retention(ctx: Context) -> None:
    old = job_runs.start(ctx.db, "indexer_update_all_views")
    job_runs.finish(ctx.db, old, JobStatus.SUCCESS, "done")
    with ctx.db.begin() as conn:
        conn.execute(
            tables.job_runs.update()
            .where(tables.job_runs.c.id == old)
            .values(started_at=datetime(2020, 1, 1))
        )
    lines = run_job(ctx, JOB)
    assert lines[-1] == "removed 1 job runs older than 5 days"
    assert [r.job for r in job_runs.all_runs(ctx.db)] == [JOB]  # the cleanup's own run stays


# -- realtime tasks, one waiting per feed ------------------------------------------------------


class SentTasks:
    """Stands in for the Celery app's `send_task`: what the listener queued, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []

    def send_task(self, name: str, args: list[str]) -> None:
        self.sent.append((name, args))


def test_changes_to_a_feed_join_the_realtime_task_already_queued(
    ctx: Context, redis: Redis
) -> None:
    from worker.realtime import REALTIME_TASK, enqueue_task, queued_key

    app = SentTasks()
    dispatch = enqueue_task(app, redis)
    products = ctx.registry.get("products")
    for _ in range(5):  # a burst while the feed is locked by a long reindex
        assert dispatch(products) is None
    assert app.sent == [(REALTIME_TASK, ["products"])]
    redis.delete(queued_key("products"))  # the task started: later changes need a new one
    dispatch(products)
    assert len(app.sent) == 2
