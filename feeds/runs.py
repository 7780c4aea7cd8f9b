"""Sync runs and sync errors (SPEC §6): every operation on a feed is a run with counters and a status;
every item that failed in a run is an error row with its category.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from feeds.diff import iso
from feeds.export.protocol import ItemResult
from feeds.locks import live_owners
from feeds.store import Base, ItemStatus, utcnow


class Operation(StrEnum):
    FULL_SYNC = "full_sync"
    PARTIAL_SYNC = "partial_sync"
    REINDEX_INVALID = "reindex_invalid"
    LEGACY_EXPORT = "legacy_export"
    RESEND_FAILED = "resend_failed"
    RESYNC_ERRORS = "resync_errors"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    ERROR = "error"
    CONFIG_ERROR = "config_error"
    ROLLED_BACK = "rolled_back"


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_started", "started_at"),
        Index("ix_sync_runs_feed", "feed", "started_at"),
        Index("ix_sync_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    feed: Mapped[str] = mapped_column(String(100))
    operation: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    rows_synced: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed_with_errors: Mapped[int] = mapped_column(Integer, default=0)
    last_timestamp_synced: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The lock owner of the process running it: a `running` run whose owner no longer holds the
    # feed's lock is abandoned (its process died) and is closed as `error`.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)


class SyncError(Base):
    __tablename__ = "sync_errors"
    __table_args__ = (
        Index("ix_sync_errors_item", "feed", "item_id"),
        Index("ix_sync_errors_category", "resolved", "category"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(32))
    feed: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(40))
    code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


sync_runs = cast(Table, SyncRun.__table__)
sync_errors = cast(Table, SyncError.__table__)


@dataclass
class Counts:
    """What one operation did, item by item: the counters of its run."""

    new: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    rows_synced: int = 0
    last_timestamp_synced: datetime | None = None
    # Items the API-call budget kept from being sent (status -1, resent later); not a column.
    deferred: int = 0
    # Of `failed`, those the destination rejected (400: not resent until they change); not a column.
    rejected: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for name in _ADDED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.last_timestamp_synced and (
            self.last_timestamp_synced is None
            or other.last_timestamp_synced > self.last_timestamp_synced
        ):
            self.last_timestamp_synced = other.last_timestamp_synced
        return self

    def as_dict(self) -> dict[str, int]:
        return {
            name: getattr(self, name) for name in ("new", "updated", "deleted", "skipped", "failed")
        }


_ADDED = ("new", "updated", "deleted", "skipped", "failed", "rows_synced", "deferred", "rejected")


def status_for(counts: Counts, config_error: str | None = None) -> RunStatus:
    """`config_error` when the destination refused us; `partial` when the API-call budget paused
    sending or some items failed; `error` when items failed and none synced."""
    if config_error:
        return RunStatus.CONFIG_ERROR
    if counts.deferred:
        return RunStatus.PARTIAL
    if counts.failed == 0:
        return RunStatus.SUCCESS
    if counts.rows_synced == 0:
        return RunStatus.ERROR
    return RunStatus.PARTIAL


BUILD_FAILED = "BUILD_FAILED"  # the code of an entity the feed's builder raised on
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


def start_run(engine: Engine, run_id: str, feed: str, operation: Operation, owner: str) -> None:
    """Record a run as `running`; `owner` is the owner of the feed lock the run holds throughout.

    Holding that lock, the run is the only live one of its feed: any other `running` run of the
    feed was left by a process that died, and is closed here as `error`.
    """
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(sync_runs)
            .where(sync_runs.c.feed == feed, sync_runs.c.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.ERROR.value, finished_at=now, message=ABANDONED)
        )
        conn.execute(
            sync_runs.insert().values(
                id=run_id,
                feed=feed,
                operation=operation.value,
                status=RunStatus.RUNNING.value,
                started_at=now,
                owner=owner,
            )
        )


ABANDONED = (
    "abandoned: the process running it stopped before the run finished (killed, or its host "
    "lost); what it had recorded stays, the rest is sent by the next runs"
)


def close_abandoned(engine: Engine) -> int:
    """Close as `error` every `running` run whose process is gone: its owner no longer holds its
    feed's lock (released, expired, or its process is dead). Returns how many were closed.

    Any job or reader may call it: a live run renews its lock after every batch.
    """
    c = sync_runs.c
    with engine.connect() as conn:
        running = conn.execute(
            select(c.id, c.owner).where(c.status == RunStatus.RUNNING.value, c.owner.is_not(None))
        ).all()
    if not running:
        return 0
    alive = live_owners(engine, {row.owner for row in running})
    gone = [row.id for row in running if row.owner not in alive]
    if not gone:
        return 0
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(sync_runs)
                .where(c.id.in_(gone), c.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.ERROR.value, finished_at=utcnow(), message=ABANDONED)
            ).rowcount
        )


def finish_run(
    engine: Engine, run_id: str, counts: Counts, status: RunStatus, message: str | None = None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(sync_runs)
            .where(sync_runs.c.id == run_id)
            .values(
                status=status.value,
                finished_at=utcnow(),
                new=counts.new,
                updated=counts.updated,
                deleted=counts.deleted,
                failed=counts.failed,
                skipped=counts.skipped,
                rows_synced=counts.rows_synced,
                rows_failed_with_errors=counts.failed,
                last_timestamp_synced=counts.last_timestamp_synced,
                message=message,
            )
        )


def failure_note(engine: Engine, run_id: str, failed: int) -> str:
    """Why a run synced nothing, in one line: how many items failed and the first error recorded
    (from the database, so it covers the batches other processes did for the run)."""
    c = sync_errors.c
    with engine.connect() as conn:
        first = conn.execute(
            select(c.item_id, c.code, c.message).where(c.run_id == run_id).order_by(c.id).limit(1)
        ).first()
    note = f"{failed} items failed, none was synced"
    if first is None:
        return note
    return f"{note}; first: item {first.item_id}: {first.code}: {first.message}"[:2000]


def record_errors(conn: Connection, run_id: str, feed: str, results: Sequence[ItemResult]) -> None:
    """One error row per failed item of the run; an item sent now resolves its earlier errors.

    An item the API-call budget kept back (-1) was not sent and did not fail: no row, nothing resolved.
    """
    now = utcnow()
    failed = [r for r in results if r.status not in (ItemStatus.SENT, ItemStatus.SKIPPED)]
    sent = [r.id for r in results if r.status is ItemStatus.SENT]
    # The probe spares an UPDATE with a thousand ids per round when nothing is open, as in
    # most rounds: on PostgreSQL that UPDATE was a sixth of a full sync's time.
    if sent and _has_open_errors(conn, feed):
        resolve(conn, feed, sent, now)
    if not failed:
        return
    earlier = {
        item_id: (first_seen, attempts)
        for item_id, first_seen, attempts in conn.execute(
            select(sync_errors.c.item_id, sync_errors.c.first_seen, sync_errors.c.attempts).where(
                sync_errors.c.feed == feed,
                sync_errors.c.resolved.is_(False),
                sync_errors.c.item_id.in_([r.id for r in failed]),
            )
        )
    }
    conn.execute(
        sync_errors.insert(),
        [
            {
                "run_id": run_id,
                "feed": feed,
                "item_id": r.id,
                "category": str(r.category or "other"),
                "code": r.code,
                "message": r.message,
                "first_seen": earlier.get(r.id, (now, 0))[0],
                "last_seen": now,
                "attempts": earlier.get(r.id, (now, 0))[1] + 1,
                "resolved": False,
            }
            for r in failed
        ],
    )
    # The older rows of the same items are superseded by the new ones.
    old = [r.id for r in failed if r.id in earlier]
    if old:
        conn.execute(
            update(sync_errors)
            .where(
                and_(
                    sync_errors.c.feed == feed,
                    sync_errors.c.item_id.in_(old),
                    sync_errors.c.run_id != run_id,
                    sync_errors.c.resolved.is_(False),
                )
            )
            .values(resolved=True, resolved_at=now)
        )


def resolve_build_failures(conn: Connection, feed: str, entities: Iterable[int]) -> None:
    """Resolve the BUILD_FAILED errors of entities that built now (their rows name the entity:
    an entity that never built has no item id)."""
    if not _has_open_errors(conn, feed):
        return
    conn.execute(
        update(sync_errors)
        .where(
            sync_errors.c.feed == feed,
            sync_errors.c.code == BUILD_FAILED,
            sync_errors.c.resolved.is_(False),
            sync_errors.c.item_id.in_([str(entity) for entity in entities]),
        )
        .values(resolved=True, resolved_at=utcnow())
    )


def _has_open_errors(conn: Connection, feed: str) -> bool:
    probe = select(sync_errors.c.id).where(
        sync_errors.c.feed == feed, sync_errors.c.resolved.is_(False)
    )
    return conn.execute(probe.limit(1)).first() is not None


def resolve(
    conn: Connection, feed: str, item_ids: Sequence[str], now: datetime | None = None
) -> None:
    conn.execute(
        update(sync_errors)
        .where(
            sync_errors.c.feed == feed,
            sync_errors.c.item_id.in_(list(item_ids)),
            sync_errors.c.resolved.is_(False),
        )
        .values(resolved=True, resolved_at=now or utcnow())
    )


def get_run(conn: Connection, run_id: str) -> dict[str, object] | None:
    row = conn.execute(select(sync_runs).where(sync_runs.c.id == run_id)).mappings().first()
    return None if row is None else dict(row)


def list_runs(
    conn: Connection,
    *,
    feed: str | None = None,
    operation: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, object]]:
    """Runs, newest first, filtered."""
    c = sync_runs.c
    query = select(sync_runs).order_by(c.started_at.desc(), c.id.desc()).limit(limit)
    for column, value in ((c.feed, feed), (c.operation, operation), (c.status, status)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(c.started_at >= since)
    return [dict(row) for row in conn.execute(query).mappings()]


def list_errors(
    conn: Connection,
    *,
    feed: str | None = None,
    category: str | None = None,
    include_resolved: bool = False,
    run_id: str | None = None,
) -> list[dict[str, object]]:
    """Sync errors, newest first: the current (unresolved) ones unless asked otherwise."""
    c = sync_errors.c
    conditions = _error_conditions(feed, category, include_resolved, run_id)
    query = select(sync_errors).where(*conditions).order_by(c.last_seen.desc(), c.id.desc())
    return [dict(row) for row in conn.execute(query).mappings()]


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


def remove_history(
    engine: Engine, retention_days: int, now: datetime | None = None
) -> tuple[int, int]:
    """`sync_history_cleanup`: drop finished runs and resolved errors older than the retention.

    Unresolved errors stay whatever their age: they are still true.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with engine.begin() as conn:
        removed_runs = conn.execute(
            sync_runs.delete().where(
                sync_runs.c.started_at < cutoff, sync_runs.c.status != RunStatus.RUNNING.value
            )
        ).rowcount
        removed_errors = conn.execute(
            sync_errors.delete().where(
                sync_errors.c.resolved.is_(True), sync_errors.c.last_seen < cutoff
            )
        ).rowcount
    return removed_runs, removed_errors


# --- queries of the HTTP API and dashboard -------------------------------------------------


def runs_page(
    conn: Connection,
    feed: str,
    *,
    start: tuple[datetime, str] | None = None,
    older: bool = True,
    limit: int = 10,
) -> list[dict[str, object]]:
    """Up to `limit` runs of a feed, newest first, strictly older (or newer) than the run `start`
    (its started_at and id); from the newest when `start` is None."""
    c = sync_runs.c
    query = select(sync_runs).where(c.feed == feed)
    if start is not None:
        query = query.where(_beyond(start, older))
    if older:
        query = query.order_by(c.started_at.desc(), c.id.desc()).limit(limit)
        return [dict(row) for row in conn.execute(query).mappings()]
    query = query.order_by(c.started_at.asc(), c.id.asc()).limit(limit)
    return [dict(row) for row in reversed(conn.execute(query).mappings().all())]


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
) -> tuple[list[dict[str, object]], int]:
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
    return [dict(row) for row in conn.execute(query).mappings()], total


def errors_page(
    conn: Connection,
    *,
    feed: str | None = None,
    category: str | None = None,
    include_resolved: bool = False,
    run_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, object]], int]:
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
    return [dict(row) for row in conn.execute(query).mappings()], total


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


ERROR_CSV_COLUMNS = [
    "feed",
    "item_id",
    "category",
    "code",
    "message",
    "first_seen",
    "last_seen",
    "attempts",
    "resolved",
    "run_id",
]


def errors_csv(rows: Iterable[Mapping[str, object]]) -> Iterator[str]:
    """Sync errors as CSV lines (a header first; ISO 8601 UTC times): `sync:errors --csv` and the API."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ERROR_CSV_COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(row.get(column)) for column in ERROR_CSV_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# OWASP CSV injection: a spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A cell that is a plain number cannot hold a formula: "-5" stays a number for the spreadsheet.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _csv_value(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str):
        return _as_text(value)
    return value


def _as_text(text: str) -> str:
    """The text of a CSV cell that a spreadsheet shows as text instead of running it as a formula."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    # Python 3.11's writer leaves a cell with a bare CR unquoted, and readers take the CR for the
    # end of the row: what follows it would start a cell of its own, a formula again.
    return text.replace("\r\n", "\n").replace("\r", "\n")
