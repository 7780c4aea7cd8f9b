"""Feedsync settings: environment variables (and `.env`) plus an optional TOML file (SPEC §8).

Everything is validated once, at start; a bad value raises `ConfigError` with one sentence naming
the setting and what is accepted.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from croniter import CroniterError, croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from feeds.definitions import ExportMode, IndexerMode
from feeds.errors import ConfigError
from feeds.schedule import JobGroup
from feeds.urls import hide_password, http_url_problem, url_parse_problem

DEFAULT_DATABASE_URL = "sqlite:///./var/feedsync.db"
DEFAULT_EXPORT_URL = "file://./var/export"
DESTINATION_FORMS = "file:///path/to/dir, file://./relative/dir or http(s)://host[:port][/path]"
WEBHOOK_FORM = "an http(s):// URL with a host, such as https://hooks.example.com/feedsync"
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


class _Env(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=True, allow_inf_nan=False
    )

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    SOURCE_DATABASE_URL: str | None = None
    BROKER_URL: str | None = None
    EXPORT_URL: str = DEFAULT_EXPORT_URL
    EXPORT_TOKEN: str | None = None
    EXPORT_TIMEOUT_S: float = Field(default=30, gt=0)
    EXPORT_BATCH_SIZE: int = Field(default=500, ge=1, le=100_000)
    EXPORT_DAILY_CALL_ALLOCATION: int | None = Field(default=None, ge=1)
    EXPORT_DAILY_CALL_LIMIT: int | None = Field(default=None, ge=1)
    FEEDSYNC_CONFIG: str | None = None
    LOG_FORMAT: Literal["console", "json"] | None = None
    METRICS_PORT: int = Field(default=9808, ge=0, le=65535)
    REALTIME_POLL_S: float = Field(default=0.25, gt=0, le=60)


class Settings(BaseModel):
    """All settings, validated. Build with `load_settings()`."""

    model_config = ConfigDict(frozen=True)

    database_url: str
    source_database_url: str
    broker_url: str | None
    export_url: str
    export_token: str | None = Field(default=None, repr=False)
    export_timeout_s: float
    export_batch_size: int
    export_daily_call_allocation: int | None
    # The destination's daily call limit when it sends no X-RateLimit-Limit-Day header.
    export_daily_call_limit: int | None = None
    config_path: str | None
    log_format: Literal["console", "json"] | None
    # Prometheus endpoint of the worker (0: any free port, printed at start).
    metrics_port: int = 9808
    # How often the realtime listener checks the changelogs (SQLite; PostgreSQL is signalled).
    realtime_poll_s: float = 0.25
    file: FileConfig = FileConfig()

    def feed(self, name: str) -> FeedSettings:
        return self.file.feeds.get(name, FeedSettings())

    def batch_size(self, feed: str) -> int:
        return self.feed(feed).batch_size or self.export_batch_size

    def destination(self, feed: str) -> str:
        return self.feed(feed).destination or self.export_url

    def crons(self) -> dict[str, str]:
        """The jobs whose cron the TOML file sets (`[jobs.<name>] cron`)."""
        return {job: entry.cron for job, entry in self.file.jobs.items()}


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read and validate the settings from `env` (default: the process environment and `.env`)."""
    try:
        raw = _Env(**_only_env_fields(env)) if env is not None else _Env()
    except ValidationError as exc:
        raise ConfigError(_sentence(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"The .env file in {Path.cwd()} is not UTF-8 text (at byte {exc.start}); "
            "accepted: KEY=value lines in UTF-8."
        ) from None
    database_url = normalise_database_url(raw.DATABASE_URL, "DATABASE_URL")
    source_url = normalise_database_url(
        raw.SOURCE_DATABASE_URL or raw.DATABASE_URL, "SOURCE_DATABASE_URL"
    )
    return Settings(
        database_url=database_url,
        source_database_url=source_url,
        broker_url=_check_broker_url(raw.BROKER_URL),
        export_url=check_export_url(raw.EXPORT_URL, "EXPORT_URL"),
        export_token=_check_token(raw.EXPORT_TOKEN),
        export_timeout_s=raw.EXPORT_TIMEOUT_S,
        export_batch_size=raw.EXPORT_BATCH_SIZE,
        export_daily_call_allocation=raw.EXPORT_DAILY_CALL_ALLOCATION,
        export_daily_call_limit=raw.EXPORT_DAILY_CALL_LIMIT,
        config_path=raw.FEEDSYNC_CONFIG,
        log_format=raw.LOG_FORMAT,
        metrics_port=raw.METRICS_PORT,
        realtime_poll_s=raw.REALTIME_POLL_S,
        file=read_config_file(raw.FEEDSYNC_CONFIG) if raw.FEEDSYNC_CONFIG else FileConfig(),
    )


def read_config_file(path: str) -> FileConfig:
    """Parse and validate the TOML configuration file."""
    accepted = "accepted: the path of a TOML file (UTF-8)"
    try:
        # utf-8-sig: editors on Windows start UTF-8 files with a byte order mark.
        data = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(
            f"FEEDSYNC_CONFIG names {path!r}, which does not exist; {accepted}."
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"FEEDSYNC_CONFIG names {path!r}, which is a folder; {accepted}."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"FEEDSYNC_CONFIG file {path!r} is not UTF-8 text (at byte {exc.start}); {accepted}."
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"FEEDSYNC_CONFIG file {path!r} cannot be read ({exc.strerror}); {accepted}."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"FEEDSYNC_CONFIG file {path!r} is not valid TOML: {exc}.") from None
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_sentence(exc, prefix=f"In {path}, ")) from None


def normalise_database_url(url: str, setting: str) -> str:
    """Check an SQLAlchemy URL; plain `postgresql://` means psycopg 3, the driver Feedsync ships."""
    accepted = (
        "an SQLAlchemy URL such as sqlite:///./var/feedsync.db or postgresql://user@host:5432/db"
    )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{setting} {hide_password(url)!r} is not a database URL; accepted: {accepted}."
        ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigError(
            f"{setting} names port {parsed.port}; accepted: {accepted}, with a port from 1 to 65535."
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each connection (each thread, each worker process) would get a database of its own.
        raise ConfigError(
            f"{setting} {url!r} is an in-memory database, which every connection sees empty; "
            f"accepted: {accepted}."
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{setting} uses {parsed.get_backend_name()!r}, which is not supported; accepted: sqlite or postgresql URLs."
        )
    return parsed.render_as_string(hide_password=False)


def check_export_url(url: str, setting: str) -> str:
    """A destination URL as the exporter uses it; a ConfigError naming `setting` when it is not one."""
    problem = _destination_problem(url)
    if problem is not None:
        because = f": {problem}" if problem else ""
        raise ConfigError(
            f"{setting} {hide_password(url)!r} is not a destination{because}; "
            f"accepted: {DESTINATION_FORMS}."
        )
    return _without_trailing_slash(url)


def _destination_problem(url: str) -> str | None:
    """Why `url` is not a destination ("" when it is no file:// or http(s):// URL at all); None if it is."""
    if url.startswith("file://"):
        return None if len(url) > len("file://") else "it names no directory"
    if not url.startswith(("http://", "https://")):
        return ""
    problem = http_url_problem(url)
    parts = urlsplit(url) if problem is None else None
    if parts is not None and (parts.query or parts.fragment):
        return "it has a query or fragment, and the worker appends /feeds/<feed> to it"
    return problem


def _without_trailing_slash(url: str) -> str:
    return url.rstrip("/") if url.startswith(("http://", "https://")) else url


def _check_token(token: str | None) -> str | None:
    if not token:
        return None
    if any(char.isspace() or not char.isprintable() for char in token):
        # A token pasted with its line end would fail every request, as a connection error.
        raise ConfigError(
            "EXPORT_TOKEN contains a space or a control character, which an HTTP header cannot "
            "carry; accepted: the token as the destination issued it."
        )
    return token


def _check_broker_url(url: str | None) -> str | None:
    if not url:
        return None
    accepted = "accepted: unset (embedded mode) or redis://host:6379/0"
    if url.split("://", 1)[0] not in ("redis", "rediss", "amqp", "memory"):
        raise ConfigError(f"BROKER_URL {hide_password(url)!r} is not a broker URL; {accepted}.")
    problem = _broker_url_problem(url)
    if problem is not None:
        raise ConfigError(
            f"BROKER_URL {hide_password(url)!r} is not a broker URL: {problem}; {accepted}."
        )
    return url


def _broker_url_problem(url: str) -> str | None:
    """Why a redis:// (or amqp://) URL cannot be used; its host may be left out (localhost)."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "it contains a space or a control character"
    try:
        port = urlsplit(url).port
    except ValueError as exc:
        return url_parse_problem(exc)
    if port == 0:
        return "its port is not a number from 1 to 65535"
    return None


def _only_env_fields(env: dict[str, str]) -> dict[str, Any]:
    return {key: value for key, value in env.items() if key in _Env.model_fields}


def _sentence(exc: ValidationError, prefix: str = "") -> str:
    """Turn the first pydantic error into one sentence: the setting, the value, what is accepted."""
    error = exc.errors()[0]
    setting = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if value is None and error["type"] == "value_error":
        return f"{prefix}{setting} is not set, but {message}."
    if error["type"] == "missing":
        return f"{prefix}{setting} is not set, and its table needs it."
    if error["type"] == "extra_forbidden":
        return f"{prefix}the setting {setting} is unknown; accepted keys: {_accepted_keys(error['loc'])}."
    if error["type"] == "enum" or error["type"] == "literal_error":
        accepted = message.removeprefix("Input should be ")
        return f"{prefix}{setting} = {value!r} is not accepted; accepted values are {accepted}."
    return f"{prefix}{setting} = {value!r} is not accepted: {message}."


def _accepted_keys(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = FileConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            continue
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidate = args[-1] if args else annotation
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
    return ", ".join(model.model_fields)
