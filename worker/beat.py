"""The beat schedule: every job of SPEC §3 is an entry of that name sending `feedsync.<job>`,
except the jobs of a group disabled in the TOML (`[groups.<name>] enabled = false`).

Each runs on its croniter expression (the TOML `[jobs.<name>] cron`, or the default; a sixth
field gives seconds), read in UTC. The scheduler adds the cron fire time (`tick`) to each task it
sends, so that the tasks two beats send for the same tick run once (see worker/fleet.py).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from celery import beat, schedules

from config.context import check_against_feeds
from config.settings import Settings
from feeds.definitions import load_registry
from feeds.schedule import Job, catalog, cron_of, latest_fire, next_fire, scheduled

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


def jobs_of(settings: Settings) -> list[Job]:
    """The job catalog for this deployment's feeds (no database needed)."""
    registry = load_registry(settings.file.feed_modules, settings.file.builtin_feeds)
    check_against_feeds(settings, registry)
    return catalog(registry.names())


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """One entry per job of an enabled group, named as in SPEC §3."""
    jobs = scheduled(jobs_of(settings), settings.file.groups.disabled())
    return {
        job.name: {
            "task": task_name(job.name),
            "schedule": CronSchedule(cron_of(job.name, settings.crons())),
        }
        for job in jobs
    }


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Celery task routes: the tasks of a group with `[groups.<name>] queue` go to that queue."""
    groups = settings.file.groups
    return {
        task_name(job.name): {"queue": queue}
        for job in jobs_of(settings)
        if (queue := groups.of(job.group).queue) is not None
    }
