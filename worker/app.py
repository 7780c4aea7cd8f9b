"""The Celery app and its beat schedule, from the settings (SPEC §3, §9).

    celery -A worker worker      celery -A worker beat      celery -A worker flower

Every job of SPEC §3 is a beat entry of that name sending the task `feedsync.<job>`, on the job's
croniter expression (the TOML `[jobs.<name>] cron`, or the default; a sixth field gives seconds).
The beat scheduler adds the cron fire time (`tick`) to each task, so that the tasks two beats send
for the same tick run once (see worker/fleet.py). Task hygiene for long jobs on Redis: late acks,
rejection when a worker is lost, prefetch 1, and a visibility timeout above the longest job.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from celery import Celery, beat, schedules

from config.settings import Settings, load_settings
from feeds.context import check_against_feeds
from feeds.definitions import load_registry
from feeds.errors import ConfigError, FeedsyncError
from feeds.schedule import cron_of, latest_fire, next_fire
from worker.jobs import jobs_in

TASK_PREFIX = "feedsync."


def task_name(job: str) -> str:
    return f"{TASK_PREFIX}{job}"


class CronSchedule(schedules.BaseSchedule):
    """A beat schedule from a croniter expression (five fields, or six with seconds last), in UTC."""

    def __init__(self, cron: str, nowfun: Any = None, app: Any = None) -> None:
        self.cron = cron
        super().__init__(nowfun=nowfun, app=app)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return next_fire(self.cron, last_run_at) - self.now()

    def is_due(self, last_run_at: datetime) -> schedules.schedstate:
        now = self.now()
        due_at = next_fire(self.cron, last_run_at)
        if due_at <= now:
            # However many fire times passed since the last run (beat was down), send once.
            return schedules.schedstate(True, (next_fire(self.cron, now) - now).total_seconds())
        return schedules.schedstate(False, (due_at - now).total_seconds())

    def tick(self) -> datetime:
        """The fire time a task sent now answers."""
        return latest_fire(self.cron, self.now())

    def __repr__(self) -> str:
        return f"<cron {self.cron}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronSchedule) and other.cron == self.cron

    def __hash__(self) -> int:
        return hash(self.cron)

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.cron, self.nowfun))


class FleetScheduler(beat.Scheduler):
    """Beat's in-memory scheduler, adding each task's cron fire time as its `tick` argument.

    In memory, not a schedule file: nothing to share between two beats, and a beat that was
    down does not replay the ticks it missed.
    """

    def apply_async(
        self, entry: beat.ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if isinstance(entry.schedule, CronSchedule):
            entry = copy.copy(entry)
            entry.kwargs = {**entry.kwargs, "tick": entry.schedule.tick().isoformat()}
        return super().apply_async(entry, producer, advance, **kwargs)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """One entry per job, named as in SPEC §3."""
    registry = load_registry(settings.file.feed_modules, settings.file.builtin_feeds)
    check_against_feeds(settings, registry)
    return {
        job: {"task": task_name(job), "schedule": CronSchedule(cron_of(job, settings.file.jobs))}
        for job in jobs_in(registry)
    }


def create_app(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ConfigError(
            "BROKER_URL is not set; the Celery fleet needs one, such as redis://127.0.0.1:6379/0 "
            "(without a broker, run everything in one process with `python -m worker run`)."
        )
    app = Celery(
        "feedsync",
        broker=settings.broker_url,
        backend=settings.broker_url,
        include=["worker.tasks", "worker.realtime_tasks"],
    )
    fleet = settings.file.fleet
    app.conf.update(
        timezone="UTC",
        enable_utc=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A task is acknowledged when it ends, not when it starts: a worker that dies mid-job
        # leaves it in the broker, which delivers it again (jobs are idempotent).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Redis redelivers an unacknowledged task after the visibility timeout: above the longest job.
        broker_transport_options={"visibility_timeout": fleet.visibility_timeout_s},
        # One task reserved per process: a long job does not hold others back behind it.
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,  # Flower shows every task
        task_send_sent_event=True,
        task_track_started=True,
        result_expires=timedelta(days=1),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # structlog writes its JSON lines to stderr itself
        beat_schedule=beat_schedule(settings),
        beat_scheduler="worker.app:FleetScheduler",
    )
    app.feedsync_settings = settings  # what the tasks open their context with
    return app


def _app_from_environment() -> Celery:
    try:
        return create_app(load_settings())
    except FeedsyncError as exc:
        # `celery -A worker …` imports this module: one sentence and exit 1, not a traceback.
        raise SystemExit(str(exc)) from None


app = _app_from_environment()
