"""Everything an operation needs, opened once: settings, feeds, both databases, destinations."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine

from config.settings import Settings
from feeds.definitions import Feed, FeedRegistry, load_registry
from feeds.errors import ConfigError
from feeds.export import Destination, open_destination
from feeds.schedule import job_names
from feeds.state import database, indexer_state, locks


@dataclass
class Context:
    settings: Settings
    registry: FeedRegistry
    db: Engine
    source: Engine
    _destinations: dict[str, Destination] = field(default_factory=dict)
    # The embedded run shares one context between the job loop, the listener and the API threads.
    _opening: threading.Lock = field(default_factory=threading.Lock)

    def destination(self, feed: Feed) -> Destination:
        url = self.settings.destination(feed.name)
        with self._opening:
            if url not in self._destinations:
                self._destinations[url] = open_destination(url, self.settings, self.db)
            return self._destinations[url]

    def close_destinations(self) -> None:
        """Close the destinations opened so far; the next send opens them afresh, as a new process
        would (reading the shared Retry-After pause from the database, for one)."""
        with self._opening:
            for destination in self._destinations.values():
                destination.close()
            self._destinations.clear()

    def close(self) -> None:
        self.close_destinations()
        self.db.dispose()
        if self.source is not self.db:
            self.source.dispose()


def open_context(
    settings: Settings, *, registry: FeedRegistry | None = None, migrate: bool = True
) -> Context:
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
    return Context(settings, registry, db, source or db)


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
