"""The Celery app and its beat schedule, from the settings (SPEC §3, §9).

    celery -A worker worker      celery -A worker beat      celery -A worker flower

The beat schedule is in worker/beat.py, the tasks in worker/tasks.py. Task hygiene for long jobs
on Redis: late acks, rejection when a worker is lost, prefetch 1, and a visibility timeout above
the longest job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from celery import Celery, Task
from celery.exceptions import Reject
from celery.worker.consumer import Consumer as CeleryConsumer

from config.settings import Settings, load_settings
from feeds.errors import ConfigError, FeedsyncError, StopRequested
from worker.beat import beat_schedule, task_routes

log = structlog.get_logger("worker.app")


class FeedsyncTask(Task):
    """Every task of the app: stopped by a warm shutdown between two batches (all committed), it
    goes back to the queue for another worker instead of ending failed."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except StopRequested:
            log.info("task.requeued", task=self.name, reason="warm shutdown")
            raise Reject("warm shutdown: stopped between batches", requeue=True) from None


class Consumer(CeleryConsumer):
    """Celery's worker consumer, made to survive the loss of its broker connection on Celery 5.7.

    After a connection error, Celery 5.7.0 first `collect()`s the broken connection, which
    releases its transport, then also closes it. With a task running under late acks the Redis
    channel's close tries to put that task's message back through the released transport,
    raises AttributeError, and the consumer dies: the worker process lives on and never consumes
    again (a Redis restart is enough). Celery 5.6 only collected it; so does this consumer.
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        broken = self.connection
        if broken is not None:
            broken.close = lambda: None  # collected already: nothing left to close
        super().on_connection_error_after_connected(exc)


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
        task_cls=FeedsyncTask,
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
        # Each worker looks for such tasks every tenth of it (1 to 60 s), not kombu's ~100 s.
        broker_transport_options={
            "visibility_timeout": fleet.visibility_timeout_s,
            "unacked_restore_interval": max(1, min(60, fleet.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
        },
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
        # A group's tasks may have a queue of their own (`[groups.<name>] queue`), so that, say,
        # resends get workers of their own: `celery -A worker worker -Q resend`.
        task_routes=task_routes(settings),
        beat_scheduler="worker.beat:FleetScheduler",
        worker_consumer="worker.app:Consumer",
    )
    app.feedsync_settings = settings  # what the tasks open their context with
    return app


app: Celery  # set by __getattr__ below on first use


def __getattr__(name: str) -> Celery:
    """`app`, created from the environment on first use (`celery -A worker` asks for it)."""
    if name != "app":
        raise AttributeError(f"module 'worker.app' has no attribute {name!r}")
    global app
    try:
        app = create_app(load_settings())
    except FeedsyncError as exc:
        # `celery -A worker …` lands here: one sentence and exit 1, not a traceback.
        raise SystemExit(str(exc)) from None
    return app
