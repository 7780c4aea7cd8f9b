"""The API-call budget (SPEC §6): every request to a destination counts in a rolling 24-hour window
shared by the whole fleet; when this deployment's allocation is used up, sending pauses until the
window frees.

Calls are counted in per-minute buckets of the worker database, upserted in the same statement that
checks the window, so two workers can never both take the last call. Writes to a file destination
are not API calls and are not counted.
"""

from __future__ import annotations

import functools
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import DateTime, Engine, Integer, String, bindparam, func, literal, select
from sqlalchemy.engine import Connection

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import Feed
from feeds.export import allocation
from feeds.state.database import insert_for
from feeds.state.tables import buckets, limits

log = structlog.get_logger("feeds.budget")

WINDOW = timedelta(hours=24)
BUCKET = timedelta(minutes=1)
ALLOCATION_SETTING = "EXPORT_DAILY_CALL_ALLOCATION"

# The time the budget reads. Tests replace it to move through the window without sleeping.
clock: Callable[[], datetime] = utcnow


# --- pure rules --------------------------------------------------------------------------------


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def window_start(now: datetime) -> datetime:
    """The oldest minute bucket still in the window: the last 24 hours are 1,440 buckets, this one included."""
    return minute_of(now) - WINDOW + BUCKET


def call_cap(allocation: int | None, destination_limit: int | None) -> int | None:
    """Calls this deployment may make per 24 h: its allocation, never more than the destination allows.

    No allocation means unlimited: the destination's own 429 answers then pace the sending.
    """
    if allocation is None:
        return None
    return allocation if destination_limit is None else min(allocation, destination_limit)


def resume_time(counted: Sequence[tuple[datetime, int]], cap: int) -> datetime | None:
    """When the window will hold fewer than `cap` calls again, given its buckets (minute, calls).

    None when it already does. A bucket leaves the window 24 hours after its minute.
    """
    used = sum(calls for _, calls in counted)
    for minute, calls in sorted(counted):
        if used < cap:
            break
        used -= calls
        if used < cap:
            return minute + WINDOW
    return None


def exhausted_reason(used: int, cap: int, capped_by_destination: bool, resumes: datetime) -> str:
    """The sentence runs and logs give when the budget stops sending."""
    source = (
        "the destination's X-RateLimit-Limit-Day"
        if capped_by_destination
        else f"the daily API-call allocation of {cap} (dashboard, or {ALLOCATION_SETTING})"
    )
    return (
        f"the API-call budget is used up ({used} of {cap} calls in the last 24 hours, {source}); "
        f"sending resumes at {resumes:%Y-%m-%d %H:%M} UTC"
    )


# --- usage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """API calls to one destination in the last 24 hours, against the limits that apply."""

    destination: str
    counted: bool  # False for a file destination: its writes are not API calls
    calls_24h: int
    destination_limit: int | None  # X-RateLimit-Limit-Day last seen, else EXPORT_DAILY_CALL_LIMIT
    allocation: int | None  # EXPORT_DAILY_CALL_ALLOCATION; None = unlimited
    cap: int | None  # what sending stops at: the allocation, at most the destination limit
    remaining: int | None  # None = unlimited
    window_start: datetime
    next_free_at: datetime | None  # when the oldest counted call leaves the window
    resumes_at: datetime | None  # when sending resumes, while paused

    @property
    def paused(self) -> bool:
        return self.remaining == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paused": self.paused}


def is_counted(destination: str) -> bool:
    """Only HTTP destinations cost API calls."""
    return destination.startswith(("http://", "https://"))


def usage(ctx: Context, destination: str | None = None) -> Usage:
    """API-call usage of a destination (default: EXPORT_URL) in the last 24 hours, for the fleet."""
    name = destination or ctx.plan.export_url
    return CallBudget.for_context(ctx, name).usage()


def usage_by_destination(ctx: Context) -> list[Usage]:
    """API-call usage of every destination the feeds send to (usually one), in URL order."""
    destinations = sorted({ctx.plan.feed(name).destination for name in ctx.registry.names()})
    return [usage(ctx, destination) for destination in destinations]


def calls_per_hour(
    ctx: Context, destination: str, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """API calls to `destination` per hour (UTC) over the 24-hour window, oldest hour first, empty
    hours included: the hour holding the window's first minute to the current one (24 or 25
    hours), so that the hours add up to the window's count."""
    now = now or clock()
    start = window_start(now)
    first = start.replace(minute=0)
    hours = int((minute_of(now) - first) / timedelta(hours=1)) + 1
    per_hour = {first + timedelta(hours=n): 0 for n in range(hours)}
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(buckets.c.minute, buckets.c.calls).where(
                buckets.c.destination == destination, buckets.c.minute >= start
            )
        )
        for minute, calls in rows:
            hour = minute.replace(minute=0, second=0, microsecond=0)
            if hour in per_hour:
                per_hour[hour] += calls
    return list(per_hour.items())


def exhausted(ctx: Context, feed: Feed) -> str | None:
    """Why nothing can be sent to the feed's destination now, or None when calls are left."""
    name = ctx.plan.feed(feed.name).destination
    if not is_counted(name) or allocation.calls(ctx) is None:
        return None
    current = usage(ctx, name)
    if not current.paused or current.cap is None or current.resumes_at is None:
        return None
    return exhausted_reason(
        current.calls_24h,
        current.cap,
        current.cap != current.allocation,
        current.resumes_at,
    )


def paused_note(ctx: Context, destination: str, deferred: int) -> str:
    """The note of a run the budget paused: how many items wait, and until when."""
    current = usage(ctx, destination)
    resumes = current.resumes_at or current.next_free_at
    when = f"; sending resumes at {resumes:%Y-%m-%d %H:%M} UTC" if resumes else ""
    cap = "" if current.cap is None else f" ({current.calls_24h} of {current.cap} calls in 24 h)"
    return (
        f"API-call budget used up{cap}: {deferred} items not sent, kept with status -1 for the "
        f"resend job{when}."
    )


# --- the gate ----------------------------------------------------------------------------------


class CallBudget:
    """Asked before every request to one destination: counts the call, or says why it may not be made.

    Safe to share between the sending threads of a run.
    """

    def __init__(
        self,
        engine: Engine,
        destination: str,
        allocation: int | None | Callable[[], int | None],
        configured_limit: int | None = None,
    ) -> None:
        self.engine = engine
        self.destination = destination
        # A callable is asked at each call: the allocation can change while a run sends.
        self._allocation = allocation
        self.configured_limit = configured_limit
        self._seen_limit: int | None = None
        self._limit_loaded = False
        self._pruned_minute: datetime | None = None
        self._warned = False
        self._lock = threading.Lock()
        self._lock_key = zlib.crc32(destination.encode())  # advisory lock id (PostgreSQL)

    @classmethod
    def for_context(cls, ctx: Context, destination: str) -> CallBudget:
        """The gate with the allocation in force (stored at runtime, else the environment's)."""
        return cls(ctx.db, destination, lambda: allocation.calls(ctx), ctx.plan.call_limit)

    @property
    def allocation(self) -> int | None:
        chosen = self._allocation
        return chosen() if callable(chosen) else chosen

    def acquire(self) -> str | None:
        """Count one call now and return None; or, when the budget is used up, return why not."""
        now = clock()
        minute = minute_of(now)
        cap = call_cap(self.allocation, self.destination_limit())
        values = {"destination": self.destination, "minute": minute}
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One round trip: a count lost in a server crash is harmless, waiting for the WAL
                # flush per call is not; and with a cap, check-and-count is serialised per
                # destination across workers (READ COMMITTED would let two of them read the
                # same sum and both take the last call).
                setup = [func.set_config("synchronous_commit", "off", True)]
                if cap is not None:
                    setup.append(func.pg_advisory_xact_lock(self._lock_key))
                conn.execute(select(*setup))
            self._prune(conn, minute)
            if cap is None:
                conn.execute(_count_statement(conn.dialect.name, checked=False), values)
                return None
            granted = conn.execute(
                _count_statement(conn.dialect.name, checked=True),
                {**values, "since": window_start(now), "cap": cap},
            ).first()
        if granted is not None:
            return None
        current = self.usage()
        resumes = current.resumes_at or now + BUCKET
        reason = exhausted_reason(current.calls_24h, cap, cap != self.allocation, resumes)
        with self._lock:
            warn, self._warned = not self._warned, True
        if warn:
            log.warning(
                "budget.exhausted",
                destination=self.destination,
                calls_24h=current.calls_24h,
                cap=cap,
                resumes_at=resumes.isoformat(),
            )
        return reason

    def observe_limit(self, limit: int) -> None:
        """Remember the destination's X-RateLimit-Limit-Day (written only when it changes)."""
        if self.destination_limit_seen() == limit:
            return
        now = clock()
        with self.engine.begin() as conn:
            insert = insert_for(conn.dialect.name, limits).values(
                destination=self.destination, daily_limit=limit, seen_at=now
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["destination"], set_={"daily_limit": limit, "seen_at": now}
                )
            )
        with self._lock:
            self._seen_limit, self._limit_loaded = limit, True
        log.info("budget.destination_limit", destination=self.destination, daily_limit=limit)

    def resumes_at(self) -> datetime | None:
        return self.usage().resumes_at

    def destination_limit_seen(self) -> int | None:
        with self._lock:
            if self._limit_loaded:
                return self._seen_limit
        with self.engine.connect() as conn:
            seen = conn.scalar(
                select(limits.c.daily_limit).where(limits.c.destination == self.destination)
            )
        with self._lock:
            self._seen_limit, self._limit_loaded = seen, True
        return seen

    def destination_limit(self) -> int | None:
        """The destination's daily limit: the latest header it sent, else the configured one."""
        seen = self.destination_limit_seen()
        return seen if seen is not None else self.configured_limit

    def usage(self) -> Usage:
        now = clock()
        start = window_start(now)
        counted = is_counted(self.destination)
        with self.engine.connect() as conn:
            rows = [
                (minute, calls)
                for minute, calls in conn.execute(
                    select(buckets.c.minute, buckets.c.calls)
                    .where(buckets.c.destination == self.destination, buckets.c.minute >= start)
                    .order_by(buckets.c.minute)
                )
            ]
        limit = self.destination_limit() if counted else self.configured_limit
        cap = call_cap(self.allocation, limit) if counted else None
        used = sum(calls for _, calls in rows)
        return Usage(
            destination=self.destination,
            counted=counted,
            calls_24h=used,
            destination_limit=limit,
            allocation=self.allocation,
            cap=cap,
            remaining=None if cap is None else max(0, cap - used),
            window_start=start,
            next_free_at=rows[0][0] + WINDOW if rows else None,
            resumes_at=None if cap is None else resume_time(rows, cap),
        )

    def _prune(self, conn: Connection, minute: datetime) -> None:
        """Drop this destination's buckets that left the window: once a minute per gate."""
        with self._lock:
            if self._pruned_minute == minute:
                return
            self._pruned_minute = minute
        conn.execute(
            buckets.delete().where(
                buckets.c.destination == self.destination,
                buckets.c.minute < minute - WINDOW - BUCKET,
            )
        )


def gate_for(ctx: Context, destination: str) -> CallBudget | None:
    """The budget a run asks before each request to `destination`; None for a file destination."""
    if not is_counted(destination):
        return None
    return CallBudget.for_context(ctx, destination)


@functools.cache
def _count_statement(dialect: str, *, checked: bool) -> Any:
    """One more call in a minute's bucket; `checked`: only while the window holds fewer than `cap`
    calls (a row comes back when counted).

    Built once per dialect: building the statement cost more than running it.
    """
    destination = bindparam("destination", type_=String())
    row = select(destination, bindparam("minute", type_=DateTime()), literal(1, Integer()))
    if checked:
        used = (
            select(func.coalesce(func.sum(buckets.c.calls), 0))
            .where(
                buckets.c.destination == destination,
                buckets.c.minute >= bindparam("since", type_=DateTime()),
            )
            .scalar_subquery()
        )
        row = row.where(used < bindparam("cap", type_=Integer()))
    else:
        row = row.where(literal(True))  # SQLite needs a WHERE before ON CONFLICT here
    insert = insert_for(dialect, buckets)
    insert = insert.from_select(["destination", "minute", "calls"], row)
    return insert.on_conflict_do_update(
        index_elements=["destination", "minute"],
        set_={"calls": buckets.c.calls + insert.excluded.calls},
    ).returning(buckets.c.calls)
