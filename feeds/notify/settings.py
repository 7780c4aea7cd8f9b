"""Notification settings: stored in the worker database, the TOML file only their default."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import (
    select,
)

from feeds.clock import utcnow
from feeds.context import Context
from feeds.errors import ConfigError
from feeds.state.database import insert_for
from feeds.state.tables import settings_table
from feeds.urls import host_of, is_http_url

log = structlog.get_logger("feeds.notify.settings")


class Frequency(StrEnum):
    OFF = "off"
    IMMEDIATELY = "immediately"
    DAILY = "daily"
    WEEKLY = "weekly"


class NoticeKind(StrEnum):
    ERROR_CATEGORY = "error_category"
    RUN_FAILED = "run_failed"
    DIGEST = "digest"


EVENT_KINDS = (NoticeKind.ERROR_CATEGORY.value, NoticeKind.RUN_FAILED.value)


@dataclass(frozen=True)
class NotificationConfig:
    """The notification settings in force: from the TOML `[notifications]`, or as changed at runtime."""

    frequency: Frequency
    webhook_url: str | None
    source: str  # "config" (the TOML file or its defaults) or "database" (changed at runtime)
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.frequency is not Frequency.OFF and self.webhook_url is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency.value,
            "webhook_url": self.webhook_url,
            "source": self.source,
            "updated_at": self.updated_at,
        }


def current_settings(ctx: Context) -> NotificationConfig:
    """The settings in force: a runtime change (PUT /sync/notifications) wins over the TOML file."""
    with ctx.db.connect() as conn:
        row = conn.execute(select(settings_table).where(settings_table.c.id == 1)).first()
    if row is not None:
        return NotificationConfig(
            Frequency(row.frequency), row.webhook_url, "database", row.updated_at
        )
    plan = ctx.plan
    return NotificationConfig(Frequency(plan.notify_frequency), plan.notify_webhook, "config")


def update_settings(ctx: Context, *, frequency: str, webhook_url: str | None) -> NotificationConfig:
    """Change the settings for every worker; raises ConfigError with one sentence on a bad value."""
    chosen, url = check_settings(frequency, webhook_url)
    now = utcnow()
    values = {"frequency": chosen.value, "webhook_url": url, "updated_at": now}
    with ctx.db.begin() as conn:
        insert = insert_for(conn.dialect.name, settings_table).values(id=1, **values)
        conn.execute(insert.on_conflict_do_update(index_elements=["id"], set_=values))
    log.info(
        "notifications.settings_changed",
        frequency=chosen.value,
        webhook=host_of(url) if url else None,
    )
    return NotificationConfig(chosen, url, "database", now)


def check_settings(frequency: str, webhook_url: str | None) -> tuple[Frequency, str | None]:
    """Validate a frequency and a webhook URL; the sentence of the ConfigError says what is accepted."""
    accepted = ", ".join(f"'{f.value}'" for f in Frequency)
    try:
        chosen = Frequency(frequency)
    except ValueError:
        raise ConfigError(
            f"Notification frequency {frequency!r} is not accepted; accepted values are {accepted}."
        ) from None
    url = (webhook_url or "").strip() or None
    if url is not None and (len(url) > 2000 or not is_http_url(url)):
        raise ConfigError(
            f"Webhook URL {url[:100]!r} is not accepted; accepted: an http(s):// URL with a host, "
            "such as https://hooks.example.com/feedsync."
        )
    if chosen is not Frequency.OFF and url is None:
        raise ConfigError(
            f"Notification frequency {chosen.value!r} needs a webhook URL to deliver to; "
            "give webhook_url, or set the frequency to 'off'."
        )
    return chosen, url
