"""Reading runs and errors: the one read model behind the CLI, the API and the dashboard."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    and_,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from feeds.state.tables import sync_errors, sync_runs


@dataclass(frozen=True)
class RunRow:
    """One sync run as recorded (a row of `sync_runs`)."""

    id: str
    feed: str
    operation: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    new: int
    updated: int
    deleted: int
    failed: int
    skipped: int
    rows_synced: int
    rows_failed_with_errors: int
    last_timestamp_synced: datetime | None
    message: str | None
    owner: str | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None while it runs."""
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)


@dataclass(frozen=True)
class ErrorRow:
    """One sync error as recorded (a row of `sync_errors`)."""

    id: int
    run_id: str
    feed: str
    item_id: str
    category: str
    code: str | None
    message: str | None
    first_seen: datetime
    last_seen: datetime
    attempts: int
    resolved: bool
    resolved_at: datetime | None
    field: str | None = None  # what the destination named: the field it refused
    value: str | None = None  # the rejected value, or the record a missing association names


def _runs(rows: Iterable[RowMapping]) -> list[RunRow]:
    return [RunRow(**row) for row in rows]


def _errors(rows: Iterable[RowMapping]) -> list[ErrorRow]:
    return [ErrorRow(**row) for row in rows]


_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """Naive UTC from `YYYY-MM-DD` or an ISO 8601 time; with `end_of_day` a bare date means the
    midnight after it, so that "until 2026-11-23" includes that day. ValueError in one sentence."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        if end_of_day and _BARE_DATE.fullmatch(text):
            parsed += timedelta(days=1)
    except (ValueError, OverflowError):
        raise ValueError(
            f"{text!r} is not a date; accepted: YYYY-MM-DD or an ISO 8601 time."
        ) from None
    return parsed


def get_run(conn: Connection, run_id: str) -> RunRow | None:
    row = conn.execute(select(sync_runs).where(sync_runs.c.id == run_id)).mappings().first()
    return None if row is None else RunRow(**row)


def list_runs(
    conn: Connection,
    *,
    feed: str | None = None,
    operation: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[RunRow]:
    """Runs, newest first, filtered (started in [since, until))."""
    c = sync_runs.c
    query = select(sync_runs).order_by(c.started_at.desc(), c.id.desc()).limit(limit)
    for column, value in ((c.feed, feed), (c.operation, operation), (c.status, status)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(c.started_at >= since)
    if until is not None:
        query = query.where(c.started_at < until)
    return _runs(conn.execute(query).mappings())


def list_errors(
    conn: Connection,
    *,
    feed: str | None = None,
    category: str | None = None,
    include_resolved: bool = False,
    run_id: str | None = None,
) -> list[ErrorRow]:
    """Sync errors, newest first: the current (unresolved) ones unless asked otherwise."""
    c = sync_errors.c
    conditions = _error_conditions(feed, category, include_resolved, run_id)
    query = select(sync_errors).where(*conditions).order_by(c.last_seen.desc(), c.id.desc())
    return _errors(conn.execute(query).mappings())


def _error_conditions(
    feed: str | None, category: str | None, include_resolved: bool, run_id: str | None
) -> list[ColumnElement[bool]]:
    """The filters of the error lists: current ones only unless asked, by feed, category, run."""
    c = sync_errors.c
    conditions: list[ColumnElement[bool]] = [] if include_resolved else [c.resolved.is_(False)]
    for column, value in ((c.feed, feed), (c.category, category), (c.run_id, run_id)):
        if value is not None:
            conditions.append(column == value)
    return conditions


def runs_page(
    conn: Connection,
    feed: str,
    *,
    start: tuple[datetime, str] | None = None,
    older: bool = True,
    limit: int = 10,
) -> list[RunRow]:
    """Up to `limit` runs of a feed, newest first, strictly older (or newer) than the run `start`
    (its started_at and id); from the newest when `start` is None."""
    c = sync_runs.c
    query = select(sync_runs).where(c.feed == feed)
    if start is not None:
        query = query.where(_beyond(start, older))
    if older:
        query = query.order_by(c.started_at.desc(), c.id.desc()).limit(limit)
        return _runs(conn.execute(query).mappings())
    query = query.order_by(c.started_at.asc(), c.id.asc()).limit(limit)
    return _runs(reversed(conn.execute(query).mappings().all()))


def has_runs_beyond(conn: Connection, feed: str, start: tuple[datetime, str], older: bool) -> bool:
    """Whether the feed has runs older (or newer) than the run `start`."""
    query = select(sync_runs.c.id).where(sync_runs.c.feed == feed, _beyond(start, older)).limit(1)
    return conn.execute(query).first() is not None


def _beyond(start: tuple[datetime, str], older: bool) -> ColumnElement[bool]:
    c = sync_runs.c
    moment, run_id = start
    if older:
        return or_(c.started_at < moment, and_(c.started_at == moment, c.id < run_id))
    return or_(c.started_at > moment, and_(c.started_at == moment, c.id > run_id))


class RunSort(StrEnum):
    START = "start"
    END = "end"


@dataclass(frozen=True)
class RunFilter:
    """The filters of the run history: a date range on the start time, feed, operation, status."""

    since: datetime | None = None
    until: datetime | None = None
    feed: str | None = None
    operation: str | None = None
    status: str | None = None


def find_runs(
    conn: Connection,
    where: RunFilter,
    *,
    sort: RunSort = RunSort.START,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[RunRow], int]:
    """A page of runs matching `where`, newest first by start or end time (running runs first when
    sorting by end), and how many match in all."""
    c = sync_runs.c
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (c.feed, where.feed),
        (c.operation, where.operation),
        (c.status, where.status),
    ):
        if value is not None:
            conditions.append(column == value)
    if where.since is not None:
        conditions.append(c.started_at >= where.since)
    if where.until is not None:
        conditions.append(c.started_at < where.until)
    total = int(conn.scalar(select(func.count()).select_from(sync_runs).where(*conditions)) or 0)
    if sort is RunSort.END:
        order = [
            c.finished_at.is_(None).desc(),
            c.finished_at.desc(),
            c.started_at.desc(),
            c.id.desc(),
        ]
    else:
        order = [c.started_at.desc(), c.id.desc()]
    query = select(sync_runs).where(*conditions).order_by(*order).limit(limit).offset(offset)
    return _runs(conn.execute(query).mappings()), total


def errors_page(
    conn: Connection,
    *,
    feed: str | None = None,
    category: str | None = None,
    include_resolved: bool = False,
    run_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ErrorRow], int]:
    """A page of sync errors, newest first (current ones unless asked otherwise), and how many match."""
    c = sync_errors.c
    conditions = _error_conditions(feed, category, include_resolved, run_id)
    total = int(conn.scalar(select(func.count()).select_from(sync_errors).where(*conditions)) or 0)
    query = (
        select(sync_errors)
        .where(*conditions)
        .order_by(c.last_seen.desc(), c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return _errors(conn.execute(query).mappings()), total


@dataclass(frozen=True)
class CategorySummary:
    category: str
    errors: int
    records: int  # distinct affected items (feed and item id)


def error_summary(
    conn: Connection, *, feed: str | None = None, run_id: str | None = None
) -> list[CategorySummary]:
    """Current (unresolved) errors per category: how many, and how many distinct records they affect;
    the largest category first."""
    c = sync_errors.c
    current = _error_conditions(feed, None, False, run_id)
    errors: dict[str, int] = dict(
        conn.execute(select(c.category, func.count()).where(*current).group_by(c.category)).all()
    )
    affected = select(c.category, c.feed, c.item_id).where(*current).distinct().subquery()
    records: dict[str, int] = dict(
        conn.execute(select(affected.c.category, func.count()).group_by(affected.c.category)).all()
    )
    rows = [
        CategorySummary(str(cat), int(n), int(records.get(cat, 0))) for cat, n in errors.items()
    ]
    return sorted(rows, key=lambda s: (-s.errors, s.category))


def error_feeds(conn: Connection, *, feed: str | None = None) -> dict[str, list[tuple[str, int]]]:
    """Current errors per category and feed: {category: [(feed, errors), …]} by feed name."""
    c = sync_errors.c
    query = (
        select(c.category, c.feed, func.count())
        .where(*_error_conditions(feed, None, False, None))
        .group_by(c.category, c.feed)
        .order_by(c.category, c.feed)
    )
    found: dict[str, list[tuple[str, int]]] = {}
    for category, name, errors in conn.execute(query).all():
        found.setdefault(str(category), []).append((str(name), int(errors)))
    return found


def latest_run(conn: Connection, feed: str, statuses: Collection[str]) -> RunRow | None:
    """The newest run of `feed` whose status is one of `statuses` (walks the feed's run index)."""
    c = sync_runs.c
    query = (
        select(sync_runs)
        .where(c.feed == feed, c.status.in_(list(statuses)))
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else RunRow(**row)


def runs_by_ids(conn: Connection, run_ids: Collection[str]) -> list[RunRow]:
    """The runs with these ids that are still recorded, newest first."""
    if not run_ids:
        return []
    c = sync_runs.c
    query = select(sync_runs).where(c.id.in_(list(run_ids))).order_by(c.started_at.desc(), c.id)
    return _runs(conn.execute(query).mappings())


@dataclass(frozen=True)
class RunCategory:
    category: str
    errors: int  # every error the run recorded in this category
    current: int  # of them, those not resolved since


def run_error_categories(conn: Connection, run_id: str) -> list[RunCategory]:
    """The errors one run recorded, per category, resolved or not; the largest category first."""
    c = sync_errors.c
    unresolved = func.sum(case((c.resolved.is_(False), 1), else_=0))
    query = (
        select(c.category, func.count(), unresolved).where(c.run_id == run_id).group_by(c.category)
    )
    rows = [RunCategory(str(cat), int(n), int(cur or 0)) for cat, n, cur in conn.execute(query)]
    return sorted(rows, key=lambda r: (-r.errors, r.category))


def item_errors(conn: Connection, feed: str, item_id: str, limit: int = 50) -> list[ErrorRow]:
    """The errors recorded for one item (resolved ones too), newest first."""
    c = sync_errors.c
    query = (
        select(sync_errors)
        .where(c.feed == feed, c.item_id == item_id)
        .order_by(c.last_seen.desc(), c.id.desc())
        .limit(limit)
    )
    return _errors(conn.execute(query).mappings())


@dataclass(frozen=True)
class RunsFingerprint:
    """What changes whenever a run starts, ends or is removed (see `feed_health.StatusCounts`)."""

    runs: int
    running: int
    newest_start: datetime | None


def runs_fingerprint(conn: Connection) -> RunsFingerprint:
    c = sync_runs.c
    running = func.sum(case((c.status == "running", 1), else_=0))
    runs, now_running, newest = conn.execute(
        select(func.count(), running, func.max(c.started_at))
    ).one()
    return RunsFingerprint(int(runs), int(now_running or 0), newest)
