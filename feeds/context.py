"""Everything an operation needs, opened once: the feeds, both databases, the plan, destinations.

The context is built by the composition root (`config.context.open_context`); the domain reads its
parameters from `plan`, never from the settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine

from feeds.definitions import Feed, FeedPlan, FeedRegistry, RetryPolicy
from feeds.export import Destination
from feeds.schedule import JobGroup, cron_of


@dataclass(frozen=True)
class Plan:
    """The deployment's settings as the domain needs them, resolved once (immutable)."""

    feeds: Mapping[str, FeedPlan]
    # The plan of a feed not in `feeds` (the EXPORT_URL and EXPORT_BATCH_SIZE defaults).
    default_feed: FeedPlan
    export_url: str
    retry: RetryPolicy = RetryPolicy()
    call_allocation: int | None = None
    # The destination's daily call limit when it sends no X-RateLimit-Limit-Day header.
    call_limit: int | None = None
    retention_days: int = 5
    # `[jobs.<name>] cron` of the TOML file: the jobs whose default cron is replaced.
    crons: Mapping[str, str] = field(default_factory=dict)
    # Groups off the schedule (`[groups.<name>] enabled = false`): run only on demand.
    disabled_groups: frozenset[JobGroup] = frozenset()
    notify_frequency: str = "off"
    notify_webhook: str | None = None

    def feed(self, name: str) -> FeedPlan:
        return self.feeds.get(name, self.default_feed)

    def cron(self, job: str) -> str:
        return cron_of(job, self.crons)

    def destinations(self) -> list[str]:
        return sorted({plan.destination for plan in self.feeds.values()})


@dataclass
class Context:
    registry: FeedRegistry
    db: Engine
    source: Engine
    plan: Plan
    # Opens the destination of a URL (with the token, timeout and shared pause of this deployment).
    connect: Callable[[str], Destination]
    # Opens a context like this one in another process (picklable: a parallel reindex's workers).
    reopen: Callable[[], Context]
    _destinations: dict[str, Destination] = field(default_factory=dict)
    # The embedded run shares one context between the job loop, the listener and the API threads.
    _opening: threading.Lock = field(default_factory=threading.Lock)

    def destination(self, feed: Feed) -> Destination:
        url = self.plan.feed(feed.name).destination
        with self._opening:
            if url not in self._destinations:
                self._destinations[url] = self.connect(url)
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
