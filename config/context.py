"""The composition root: settings in, an open context with each feed's plan out.

Only here are settings read for the domain: `feeds/` gets plain immutable plans and never
imports `config`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from config.settings import Settings
from feeds.context import Context, Plan
from feeds.definitions import FeedPlan, FeedRegistry, RetryPolicy, load_registry
from feeds.errors import ConfigError
from feeds.export import open_destination
from feeds.schedule import job_names
from feeds.state import database, indexer_state, locks


@dataclass
class AppContext(Context):
    """The context with the settings it was built from, for the adapters (CLI, jobs, API, metrics)."""

    settings: Settings = field(kw_only=True)


def open_context(
    settings: Settings, *, registry: FeedRegistry | None = None, migrate: bool = True
) -> AppContext:
    """Open both databases, migrate the worker database when behind, and create missing indexer states."""
    registry = registry or load_registry(settings.file.feed_modules, settings.file.builtin_feeds)
    check_against_feeds(settings, registry)
    locks.configure(settings.file.fleet.feed_lock_ttl_s)
    # The source first: when it cannot be reached, no worker database file has been created yet.
    separate = settings.source_database_url != settings.database_url
    source = (
        database.connect(settings.source_database_url, "SOURCE_DATABASE_URL") if separate else None
    )
    db = database.connect(settings.database_url, "DATABASE_URL")
    if migrate:
        database.upgrade(db)
    with db.begin() as conn:
        indexer_state.ensure_states(
            conn, {feed.indexer_id: settings.feed(feed.name).indexer_mode for feed in registry}
        )
    return AppContext(
        registry,
        db,
        source or db,
        plan_of(settings, registry),
        connect=functools.partial(
            open_destination,
            token=settings.export_token,
            timeout_s=settings.export_timeout_s,
            db=db,
        ),
        reopen=functools.partial(open_context, settings, migrate=False),
        settings=settings,
    )


def plan_of(settings: Settings, registry: FeedRegistry) -> Plan:
    """Each feed's parameters and the deployment's, resolved once from the settings."""
    notifications = settings.file.notifications
    retry = settings.file.retry
    return Plan(
        feeds={name: feed_plan(settings, name) for name in registry.names()},
        default_feed=feed_plan(settings, ""),
        export_url=settings.export_url,
        retry=RetryPolicy(retry.backoff_base_s, retry.backoff_max_s, retry.max_attempts),
        call_allocation=settings.export_daily_call_allocation,
        call_limit=settings.export_daily_call_limit,
        retention_days=settings.file.retention.days,
        crons=settings.crons(),
        disabled_groups=frozenset(settings.file.groups.disabled()),
        notify_frequency=notifications.frequency,
        notify_webhook=notifications.webhook_url,
    )


def feed_plan(settings: Settings, name: str) -> FeedPlan:
    configured = settings.feed(name)
    return FeedPlan(
        destination=settings.destination(name),
        batch_size=settings.batch_size(name),
        export_mode=configured.export_mode,
        collect_batch_size=configured.collect_batch_size,
        reindex_processes=configured.reindex_processes,
        record_url=configured.record_url,
        destination_url=configured.destination_url,
    )


def check_against_feeds(settings: Settings, registry: FeedRegistry) -> None:
    """Refuse feed and job tables in the TOML file that name nothing this deployment has."""
    for name in settings.file.feeds:
        if name not in registry.names():
            raise ConfigError(
                f"[feeds.{name}] names an unknown feed; accepted feeds: {', '.join(registry.names())}."
            )
    jobs = job_names(registry.names())
    for name in settings.file.jobs:
        if name not in jobs:
            raise ConfigError(
                f"[jobs.{name}] names an unknown job; accepted jobs: {', '.join(jobs)}."
            )
