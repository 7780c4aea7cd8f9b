"""Scheduled job runs: one row per execution of a job of SPEC §3 (start, end, status, summary).

Written by every runner (Celery task, embedded loop, `cron:run`); read by `cron:list` and by the
fleet tests that check a job ran once per tick and never overlapped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    Engine,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update

from feeds.clock import utcnow
from feeds.errors import StopRequested, one_line
from feeds.state import locks
from feeds.state.database import while_unreachable
from feeds.state.locks import MACHINE, is_dead
from feeds.state.tables import job_runs


class JobStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    SKIPPED = "skipped"  # another run of the job held the fleet lock
    STOPPED = "stopped"  # warm shutdown: stopped between batches, requeued
    LOST = "lost"  # its worker died; the message was delivered again


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    tick: datetime | None
    task_id: str | None
    worker: str
    status: JobStatus
    started_at: datetime
    finished_at: datetime | None
    summary: str | None


def this_worker() -> str:
    """machine:pid of the process running the job (the pid is what a test kills)."""
    return f"{MACHINE}:{os.getpid()}"


LOST = "its worker died"


def start(
    db: Engine,
    job: str,
    *,
    tick: datetime | None = None,
    task_id: str | None = None,
    exclusive: bool = False,
) -> int:
    """Record a run as started. Marked `lost` first: an earlier `running` row of the same task, of a
    process of this machine that has died, and, when the caller holds the job's fleet lock
    (`exclusive`), any other `running` fleet task of the job."""
    now = utcnow()
    lost = update(job_runs).values(status=JobStatus.LOST, finished_at=now, summary=LOST)
    with db.begin() as conn:
        if task_id is not None:
            # The same message delivered again: its first delivery's worker died mid-run.
            conn.execute(
                lost.where(job_runs.c.task_id == task_id, job_runs.c.status == JobStatus.RUNNING)
            )
        if exclusive:  # fleet tasks only: a `cron:run` beside the fleet takes no fleet lock
            conn.execute(
                lost.where(
                    job_runs.c.job == job,
                    job_runs.c.status == JobStatus.RUNNING,
                    job_runs.c.task_id.is_not(None),
                )
            )
        _close_dead(conn, lost)
        return int(
            conn.execute(
                job_runs.insert()
                .values(
                    job=job,
                    tick=_naive(tick),
                    task_id=task_id,
                    worker=this_worker(),
                    status=JobStatus.RUNNING,
                    started_at=now,
                )
                .returning(job_runs.c.id)
            ).scalar_one()
        )


def _close_dead(conn: Connection, lost: Update) -> None:
    running = conn.execute(
        select(job_runs.c.id, job_runs.c.worker).where(job_runs.c.status == JobStatus.RUNNING)
    ).all()
    dead = [row.id for row in running if is_dead(row.worker)]
    if dead:
        conn.execute(lost.where(job_runs.c.id.in_(dead)))


def close_dead(db: Engine) -> None:
    """Mark `lost` the running jobs of processes of this machine that have died (kill -9)."""
    lost = update(job_runs).values(status=JobStatus.LOST, finished_at=utcnow(), summary=LOST)
    with db.begin() as conn:
        _close_dead(conn, lost)


def finish(db: Engine, run_id: int, status: JobStatus, summary: str) -> None:
    with db.begin() as conn:
        conn.execute(
            update(job_runs)
            .where(job_runs.c.id == run_id)
            .values(status=status, finished_at=utcnow(), summary=summary[:4000])
        )


@dataclass
class Recorder:
    """What a recorded run reports: its summary lines."""

    lines: list[str] = field(default_factory=list)

    def done(self, lines: list[str]) -> None:
        self.lines = lines


@contextmanager
def recorded(
    db: Engine,
    job: str,
    *,
    tick: datetime | None = None,
    task_id: str | None = None,
    exclusive: bool = False,
) -> Iterator[Recorder]:
    """Record the block as a run of `job`: success, error (it raised) or stopped (warm shutdown)."""
    run_id = start(db, job, tick=tick, task_id=task_id, exclusive=exclusive)
    recorder = Recorder()
    try:
        yield recorder
    except StopRequested as exc:
        finish(db, run_id, JobStatus.STOPPED, str(exc))
        raise
    except BaseException as exc:
        # A job that ran to its end but failed for some feed keeps its summary lines.
        summary = "\n".join(recorder.lines) or one_line(exc)
        # The failure may be the database's own (a restart): record it once the database is back
        # (as long as a feed lock would wait for it), rather than leave the job `running`.
        while_unreachable(
            lambda: finish(db, run_id, JobStatus.ERROR, summary),
            until=time.monotonic() + locks.ttl_s(),
            what=f"the end of job {job}",
        )
        raise
    finish(db, run_id, JobStatus.SUCCESS, "\n".join(recorder.lines))


def record_skip(
    db: Engine, job: str, reason: str, *, tick: datetime | None, task_id: str | None
) -> None:
    """A tick that found the job running elsewhere: recorded so `cron:list` shows it."""
    now = utcnow()
    with db.begin() as conn:
        conn.execute(
            job_runs.insert().values(
                job=job,
                tick=_naive(tick),
                task_id=task_id,
                worker=this_worker(),
                status=JobStatus.SKIPPED,
                started_at=now,
                finished_at=now,
                summary=reason,
            )
        )


def remove_older_than(db: Engine, days: int) -> int:
    """Drop finished job runs that started more than `days` ago (the `sync_history_cleanup` job)."""
    cutoff = utcnow() - timedelta(days=days)
    with db.begin() as conn:
        return int(
            conn.execute(
                job_runs.delete().where(
                    job_runs.c.started_at < cutoff, job_runs.c.status != JobStatus.RUNNING
                )
            ).rowcount
        )


def last_runs(db: Engine) -> dict[str, JobRun]:
    """The newest run of each job."""
    newest = (
        select(job_runs.c.job, func.max(job_runs.c.id).label("id")).group_by(job_runs.c.job)
    ).subquery()
    with db.connect() as conn:
        rows = conn.execute(select(job_runs).join(newest, newest.c.id == job_runs.c.id)).all()
    return {row.job: _run(row) for row in rows}


def left_running(db: Engine, task_id: str) -> list[str]:
    """The workers of the runs of this task still `running`: seen from a later delivery, they died."""
    query = select(job_runs.c.worker).where(
        job_runs.c.task_id == task_id, job_runs.c.status == JobStatus.RUNNING
    )
    with db.connect() as conn:
        return list(conn.scalars(query))


def all_runs(db: Engine, job: str | None = None) -> list[JobRun]:
    """Every recorded run (of one job), oldest first."""
    query = select(job_runs).order_by(job_runs.c.id)
    if job is not None:
        query = query.where(job_runs.c.job == job)
    with db.connect() as conn:
        return [_run(row) for row in conn.execute(query)]


def _run(row: object) -> JobRun:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["status"] = JobStatus(values["status"])
    return JobRun(**values)


def _naive(moment: datetime | None) -> datetime | None:
    """Timestamps are stored as naive UTC, like every column of the worker database."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
