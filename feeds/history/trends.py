"""Trends: items synced, failed and skipped per hour or per day, summed from the runs' counters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from feeds.state.tables import sync_runs


class Step(StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def delta(self) -> timedelta:
        return timedelta(hours=1) if self is Step.HOUR else timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """The buckets of a chart: `count` steps, the last one holding `now`."""

    step: Step
    count: int

    def buckets(self, now: datetime) -> list[datetime]:
        last = truncate(now, self.step)
        return [last - self.step.delta * n for n in range(self.count - 1, -1, -1)]


LAST_24_HOURS = Window(Step.HOUR, 24)
LAST_5_DAYS = Window(Step.DAY, 5)


@dataclass(frozen=True)
class Bucket:
    start: datetime
    synced: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.synced + self.failed + self.skipped


def truncate(moment: datetime, step: Step) -> datetime:
    if step is Step.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def per_feed(
    conn: Connection, window: Window, now: datetime, feed: str | None = None
) -> dict[str, list[Bucket]]:
    """Per feed that ran in the window (or only `feed`), every bucket oldest first, zeros
    included, each run counted in the bucket it started in: one GROUP BY over `started_at`."""
    starts = window.buckets(now)
    c = sync_runs.c
    bucket = _bucket(conn, c.started_at, window.step)
    conditions: list[ColumnElement[bool]] = [c.started_at >= starts[0]]
    if feed is not None:
        conditions.append(c.feed == feed)
    query = (
        select(c.feed, bucket, func.sum(c.rows_synced), func.sum(c.failed), func.sum(c.skipped))
        .where(*conditions)
        .group_by(c.feed, bucket)
    )
    found: dict[str, dict[datetime, Bucket]] = {}
    for name, start, synced, failed, skipped in conn.execute(query):
        moment = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
        moment = moment.replace(tzinfo=None)
        found.setdefault(name, {})[moment] = Bucket(
            moment, int(synced or 0), int(failed or 0), int(skipped or 0)
        )
    return {
        name: [buckets.get(start, Bucket(start)) for start in starts]
        for name, buckets in sorted(found.items())
    }


def combined(series: Sequence[Sequence[Bucket]], starts: Sequence[datetime]) -> list[Bucket]:
    """The sum of several feeds' buckets (the same starts), bucket by bucket."""
    return [
        Bucket(
            start,
            sum(s[n].synced for s in series),
            sum(s[n].failed for s in series),
            sum(s[n].skipped for s in series),
        )
        for n, start in enumerate(starts)
    ]


def _bucket(conn: Connection, column: ColumnElement[datetime], step: Step) -> ColumnElement[object]:
    if conn.dialect.name == "postgresql":
        return func.date_trunc(step.value, column)
    pattern = "%Y-%m-%d %H:00:00" if step is Step.HOUR else "%Y-%m-%d 00:00:00"
    return func.strftime(pattern, column)
