"""The TOML file's schema (FEEDSYNC_CONFIG): every key optional, every value validated at start."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from croniter import CroniterError, croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.checks import (
    DESTINATION_FORMS,
    WEBHOOK_FORM,
    _destination_problem,
    _without_trailing_slash,
)
from feeds.definitions import ExportMode, IndexerMode
from feeds.history.record_links import TEMPLATE_FORM, template_problem
from feeds.schedule import JobGroup
from feeds.urls import http_url_problem

CRON_FORMS = "five fields such as '* * * * *' or '*/5 * * * *' (a sixth, seconds, may follow)"


QUEUE_FORM = "a Celery queue name of letters, digits, '.', '_' or '-', such as 'resend'"


class _Strict(BaseModel):
    # inf is no number of seconds: a retry delay or a timeout of inf breaks the workers later.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FeedSettings(_Strict):
    export_mode: ExportMode = ExportMode.IMMEDIATE
    # Only the mode an indexer starts with; `indexer:set-mode` changes it afterwards.
    indexer_mode: IndexerMode = IndexerMode.SCHEDULE
    batch_size: StrictInt | None = Field(default=None, ge=1, le=100_000)
    # Entities read from the source per round; changed items are then sent in `batch_size` batches.
    collect_batch_size: StrictInt = Field(default=2000, ge=1, le=100_000)
    # Processes sharing a full reindex; None = one per core (max 4) for feeds of 5+ chunks.
    reindex_processes: StrictInt | None = Field(default=None, ge=1, le=64)
    destination: str | None = None
    # Links from an item to its record in the source application and in the destination.
    record_url: str | None = None
    destination_url: str | None = None

    @field_validator("record_url", "destination_url")
    @classmethod
    def _record_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = template_problem(value)
        if problem is not None:
            raise ValueError(f"{problem}; accepted: {TEMPLATE_FORM}")
        return value

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = _destination_problem(value)
        if problem is not None:
            reason = problem or "it is neither a file:// nor an http(s):// URL"
            raise ValueError(f"{reason}; accepted: {DESTINATION_FORMS}")
        return _without_trailing_slash(value)


class JobSettings(_Strict):
    cron: str

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = len(value.split())
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression; accepted: {CRON_FORMS}")
        # croniter also reads a seventh field (the year); the beat scheduler and `cron:list`
        # take five fields, or six with seconds last, and the @hourly/@daily… shorthands.
        if not value.startswith("@") and fields not in (5, 6):
            raise ValueError(f"it has {fields} fields; accepted: {CRON_FORMS}")
        try:
            croniter(value, datetime.now(UTC)).get_next(datetime)
        except CroniterError:
            raise ValueError(f"it never fires (no such date); accepted: {CRON_FORMS}") from None
        return value


class GroupSettings(_Strict):
    """One cron group: whether its jobs are scheduled, and the Celery queue its tasks go to."""

    # Off: beat and the embedded runner leave its jobs out; `cron:run` still runs them on demand.
    enabled: StrictBool = True
    # None: Celery's default queue, which every worker started without -Q consumes.
    queue: str | None = None

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise ValueError(f"it is empty; accepted: {QUEUE_FORM}")
        if not all(char.isascii() and (char.isalnum() or char in "._-") for char in value):
            raise ValueError(f"it has a character a queue name cannot hold; accepted: {QUEUE_FORM}")
        return value


class GroupsSettings(_Strict):
    """`[groups.<name>]`: one table per cron group of feeds/schedule.py (`JobGroup`)."""

    index: GroupSettings = GroupSettings()
    resync_failed_feeds_data_exporter: GroupSettings = GroupSettings()
    sync_history: GroupSettings = GroupSettings()

    def of(self, group: JobGroup) -> GroupSettings:
        settings: GroupSettings = getattr(self, group.value)
        return settings

    def disabled(self) -> list[JobGroup]:
        return [group for group in JobGroup if not self.of(group).enabled]


class FleetSettings(_Strict):
    """Celery fleet: job locks and the broker's redelivery of unacknowledged tasks."""

    # A job's Redis lock expires this long after its worker died (renewed every third of it).
    lock_ttl_s: StrictFloat = Field(default=60, ge=1, le=3600)
    # Redis redelivers a task not acknowledged after this long: keep it above the longest job.
    visibility_timeout_s: StrictInt = Field(default=21600, ge=10)
    # A feed's database lock (reindex, partial sync, resync) expires this long after its holder
    # died; it is renewed after every batch, so keep it above the slowest batch.
    feed_lock_ttl_s: StrictFloat = Field(default=120, ge=1, le=3600)


class RetrySettings(_Strict):
    backoff_base_s: StrictFloat = Field(default=60, gt=0)
    backoff_max_s: StrictFloat = Field(default=3600, gt=0)
    max_attempts: StrictInt = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s:g}) is below backoff_base_s "
                f"({self.backoff_base_s:g}); accepted: a maximum at least the base delay"
            )
        return self


class RetentionSettings(_Strict):
    days: StrictInt = Field(default=5, ge=1)


class NotificationSettings(_Strict):
    frequency: Literal["off", "immediately", "daily", "weekly"] = "off"
    # Validated when absent too: a frequency without a webhook would send nothing. A runtime
    # change (PUT /sync/notifications) replaces frequency and webhook together, and refuses the
    # same combination, so it cannot complete this one.
    webhook_url: str | None = Field(default=None, validate_default=True)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            frequency = info.data.get("frequency", "off")
            if frequency != "off":
                raise ValueError(
                    f"frequency = {frequency!r} sends notifications to it; accepted: "
                    f"{WEBHOOK_FORM}, or frequency = 'off'"
                )
            return None
        problem = http_url_problem(value)
        if problem is not None:
            raise ValueError(f"{problem}; accepted: {WEBHOOK_FORM}")
        return value


class FileConfig(_Strict):
    """The TOML file named by FEEDSYNC_CONFIG; every key is optional."""

    feed_modules: list[str] = []
    builtin_feeds: StrictBool = True
    feeds: dict[str, FeedSettings] = {}
    jobs: dict[str, JobSettings] = {}
    groups: GroupsSettings = GroupsSettings()
    retry: RetrySettings = RetrySettings()
    retention: RetentionSettings = RetentionSettings()
    notifications: NotificationSettings = NotificationSettings()
    fleet: FleetSettings = FleetSettings()
