"""Feedsync settings: environment variables (and `.env`) plus an optional TOML file (SPEC §8).

Everything is validated once, at start; a bad value raises `ConfigError` with one sentence naming
the setting and what is accepted.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.checks import _check_broker_url, _check_token, check_export_url, normalise_database_url
from config.schema import FeedSettings, FileConfig
from feeds.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./var/feedsync.db"
DEFAULT_EXPORT_URL = "file://./var/export"


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


# Every environment variable Feedsync reads: what a clean environment for a test or benchmark unsets.
ENV_VARIABLES: tuple[str, ...] = tuple(_Env.model_fields)


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
