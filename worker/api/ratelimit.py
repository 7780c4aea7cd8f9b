"""Per-key rate limits of the API (SPEC §7), counted in the worker database so that every API
process shares them.

Why the database and not Redis: every API process already shares the worker database (the
embedded mode has no Redis at all), one upsert per request costs about a millisecond on SQLite and
PostgreSQL, and a single code path is tested on both. Counting is per fixed one-minute window
(`window_start` truncated to the minute); a window's first request deletes the key's older windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from feeds.clock import utcnow
from feeds.state.database import insert_for
from worker.api.apikeys import rate_counters

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Limit:
    """At most `per_minute` requests per key and minute to the endpoints of `scope`."""

    scope: str
    per_minute: int


LIST = Limit("cdi.list", 50)
TRIGGER = Limit("cdi.trigger", 20)
JOB_STATUS = Limit("cdi.job_status", 100)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int  # seconds until the window resets (when not allowed)


class RateLimiter:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def hit(self, key_id: int, limit: Limit) -> Verdict:
        """Count one request of `key_id` to `limit.scope` and say whether it may proceed."""
        now = self.clock()
        window = now.replace(second=0, microsecond=0)
        with self.engine.begin() as conn:
            insert = insert_for(conn.dialect.name, rate_counters)
            count = conn.execute(
                insert.values(key_id=key_id, scope=limit.scope, window_start=window, count=1)
                .on_conflict_do_update(
                    index_elements=["key_id", "scope", "window_start"],
                    set_={"count": rate_counters.c.count + 1},
                )
                .returning(rate_counters.c.count)
            ).scalar_one()
            if count == 1:
                conn.execute(
                    rate_counters.delete().where(
                        rate_counters.c.key_id == key_id,
                        rate_counters.c.scope == limit.scope,
                        rate_counters.c.window_start < window,
                    )
                )
        reset_in = max(1, math.ceil((window + WINDOW - now).total_seconds()))
        return Verdict(
            allowed=count <= limit.per_minute,
            limit=limit.per_minute,
            remaining=max(0, limit.per_minute - count),
            retry_after_s=reset_in,
        )
