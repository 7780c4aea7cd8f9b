"""The pause a destination asked for with a 429, shared by every process and worker sending to it.

"Paused until" is kept per destination in the worker database: a 429 extends it (never shortens it),
and every sender reads it before posting, at most every REFRESH_S per process and always right after
a 429 of its own. Times are wall-clock UTC, as the workers may run on several hosts.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, select

from feeds.clock import utcnow
from feeds.state.database import insert_for
from feeds.state.tables import pauses

# How stale a sender's view of the pause may be: a request at most this long after another
# process's 429, against one database read per REFRESH_S per process.
REFRESH_S = 0.5


def remaining_s(paused_until: datetime | None, now: datetime) -> float:
    """Seconds until `paused_until` (0 when it is past or there is no pause)."""
    if paused_until is None:
        return 0.0
    return max(0.0, (paused_until - now).total_seconds())


class DestinationPause:
    """When one destination may be called again. Safe to share between threads.

    Without an engine the pause is this process's own (a destination used outside a worker).
    """

    def __init__(self, engine: Engine | None, destination: str, refresh_s: float = REFRESH_S):
        self.engine = engine
        self.destination = destination
        self.refresh_s = refresh_s
        self._until: datetime | None = None
        self._read_at: float | None = None  # time.monotonic() of the last database read
        self._lock = threading.Lock()

    def remaining_s(self, *, fresh: bool = False) -> float:
        """Seconds until the destination may be called again; `fresh` reads the database now."""
        with self._lock:
            stale = self._read_at is None or time.monotonic() - self._read_at >= self.refresh_s
        if self.engine is not None and (fresh or stale):
            with self.engine.connect() as conn:
                stored = conn.scalar(
                    select(pauses.c.paused_until).where(pauses.c.destination == self.destination)
                )
            self._remember(stored)
        with self._lock:
            return remaining_s(self._until, utcnow())

    def extend(self, seconds: float) -> float:
        """Pause the destination for everyone at least `seconds` from now; the seconds left of the pause."""
        until = utcnow() + timedelta(seconds=seconds)
        if self.engine is not None:
            with self.engine.begin() as conn:
                insert = insert_for(conn.dialect.name, pauses).values(
                    destination=self.destination, paused_until=until
                )
                later = case(
                    (
                        insert.excluded.paused_until > pauses.c.paused_until,
                        insert.excluded.paused_until,
                    ),
                    else_=pauses.c.paused_until,
                )
                until = conn.scalar(
                    insert.on_conflict_do_update(
                        index_elements=["destination"], set_={"paused_until": later}
                    ).returning(pauses.c.paused_until)
                )
        self._remember(until)
        with self._lock:
            return remaining_s(self._until, utcnow())

    def _remember(self, until: datetime | None) -> None:
        with self._lock:
            if until is not None and (self._until is None or until > self._until):
                self._until = until
            self._read_at = time.monotonic()
