"""The worker database: indexer state, the feed table, and locks (SQLAlchemy models and queries)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    any_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from config.settings import IndexerMode
from feeds.database import insert_for
from feeds.definitions import Keys


def utcnow() -> datetime:
    """Naive UTC now: what every timestamp column of the worker database holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ResyncCheckpoint(Base):
    """Where an interrupted `saas:resync` stands, for `--continue-resync`."""

    __tablename__ = "resync_checkpoints"

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_key: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class IndexerStatus(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    WORKING = "working"
    SUSPENDED = "suspended"


class ItemStatus(IntEnum):
    """Export status of a feed item, with the codes Adobe's data exporter stores (SPEC §5); NULL = never sent."""

    SENT = 200
    REJECTED = 400
    RETRYABLE = 2
    APP_ERROR = 0
    SKIPPED = -1


class IndexerState(Base):
    __tablename__ = "indexer_state"

    indexer_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(20))
    # Changelog version processed up to (Magento's mview_state.version_id).
    version_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    mode_updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class FeedItemRow(Base):
    """The feed table: one row per feed item id, with its last hash and export status."""

    __tablename__ = "feed_items"
    __table_args__ = (
        Index("ix_feed_items_entity", "feed", "entity_key"),
        Index("ix_feed_items_status", "feed", "status"),
    )

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    entity_key: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(32))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    modified_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sent_hash: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Legacy export mode only: the canonical JSON of `data`, kept until sent.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class FeedRebuild(Base):
    """An entity whose document could not be built: rebuilt with backoff until it builds."""

    __tablename__ = "feed_rebuilds"
    __table_args__ = (Index("ix_feed_rebuilds_due", "feed", "next_attempt_at"),)

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    entity_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    # None once `max_attempts` is reached: it waits for a change of the entity or a resync.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_failed_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class LockRow(Base):
    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


states = cast(Table, IndexerState.__table__)
items = cast(Table, FeedItemRow.__table__)
locks = cast(Table, LockRow.__table__)
checkpoints = cast(Table, ResyncCheckpoint.__table__)
rebuilds = cast(Table, FeedRebuild.__table__)


# --- indexer state -------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    indexer_id: str
    status: IndexerStatus
    mode: IndexerMode
    version_id: int
    updated_at: datetime


def ensure_states(conn: Connection, initial_modes: dict[str, IndexerMode]) -> None:
    """Create the state of every indexer not seen before: `invalid` (a first full reindex is due)."""
    known = set(conn.scalars(select(states.c.indexer_id)))
    now = utcnow()
    rows = [
        {
            "indexer_id": indexer_id,
            "status": IndexerStatus.INVALID.value,
            "mode": mode.value,
            "version_id": 0,
            "updated_at": now,
        }
        for indexer_id, mode in initial_modes.items()
        if indexer_id not in known
    ]
    if rows:
        # Two processes starting on a new database at once both find the state missing.
        insert = insert_for(conn.dialect.name, states)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["indexer_id"]), rows)


def get_state(conn: Connection, indexer_id: str) -> State:
    row = conn.execute(select(states).where(states.c.indexer_id == indexer_id)).one()
    return State(
        row.indexer_id,
        IndexerStatus(row.status),
        IndexerMode(row.mode),
        row.version_id,
        row.updated_at,
    )


def all_states(conn: Connection) -> dict[str, State]:
    return {
        row.indexer_id: State(
            row.indexer_id,
            IndexerStatus(row.status),
            IndexerMode(row.mode),
            row.version_id,
            row.updated_at,
        )
        for row in conn.execute(select(states))
    }


def set_status(conn: Connection, indexer_id: str, status: IndexerStatus) -> None:
    conn.execute(
        update(states)
        .where(states.c.indexer_id == indexer_id)
        .values(status=status.value, updated_at=utcnow())
    )


def set_mode(
    conn: Connection, indexer_id: str, mode: IndexerMode, version_id: int | None = None
) -> None:
    values: dict[str, object] = {"mode": mode.value, "mode_updated_at": utcnow()}
    if version_id is not None:
        values["version_id"] = version_id
    conn.execute(update(states).where(states.c.indexer_id == indexer_id).values(**values))


def set_version(conn: Connection, indexer_id: str, version_id: int) -> None:
    """Advance the changelog pointer; `updated_at` is what `indexer:status` shows as Schedule Updated."""
    conn.execute(
        update(states)
        .where(states.c.indexer_id == indexer_id)
        .values(version_id=version_id, updated_at=utcnow())
    )


# --- feed table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredItem:
    entity: int
    hash: str
    deleted: bool
    status: int | None = None
    attempts: int = 0
    sent_hash: str | None = None  # the hash the destination last accepted


def stored_items(conn: Connection, feed: str, keys: Keys) -> dict[str, StoredItem]:
    """The feed-table rows of the entities in `keys` (a key range also covers entities gone from the source)."""
    c = items.c
    query = select(c.id, c.entity_key, c.hash, c.deleted, c.status, c.attempts, c.sent_hash).where(
        c.feed == feed, keys.match(c.entity_key)
    )
    return {
        item_id: StoredItem(entity, hashed, bool(deleted), status, attempts, sent)
        for item_id, entity, hashed, deleted, status, attempts, sent in conn.execute(query)
    }


def accepted_since(conn: Connection, feed: str, keys: Keys, since: datetime) -> set[str]:
    """Ids of the items in `keys` that the destination accepted at or after `since`."""
    c = items.c
    query = select(c.id).where(
        c.feed == feed,
        keys.match(c.entity_key),
        c.status == int(ItemStatus.SENT),
        c.updated_at >= since,
    )
    return set(conn.scalars(query))


_IDS_PER_QUERY = 5000  # SQLite takes at most 32766 parameters per statement


def entity_keys(conn: Connection, feed: str, ids: Sequence[str]) -> dict[str, int]:
    """The entity key of each item id the feed table knows."""
    c = items.c
    if conn.dialect.name == "postgresql":
        # One array parameter: binding and planning thousands of IN parameters cost 4x as much.
        wanted = bindparam("ids", type_=postgresql.ARRAY(String))
        query = select(c.id, c.entity_key).where(c.feed == feed, c.id == any_(wanted))
        return {item_id: entity for item_id, entity in conn.execute(query, {"ids": list(ids)})}
    found: dict[str, int] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        part = list(ids[start : start + _IDS_PER_QUERY])
        query = select(c.id, c.entity_key).where(c.feed == feed, c.id.in_(part))
        found.update((item_id, entity) for item_id, entity in conn.execute(query))
    return found


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """What to write for one item after collection (and export, in immediate mode)."""

    id: str
    entity: int
    hash: str
    deleted: bool
    modified_at: datetime
    status: ItemStatus | None
    payload: bytes | None = None
    error_code: str | None = None
    error_category: str | None = None
    error_message: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None


_COLUMNS = [c.name for c in items.columns]
# A failed send of a newer version keeps the hash the destination last accepted.
_CHANGING = ", ".join(
    f"{c} = COALESCE(excluded.{c}, feed_items.{c})" if c == "sent_hash" else f"{c} = excluded.{c}"
    for c in _COLUMNS
    if c not in ("feed", "id")
)
_SQLITE_UPSERT = (
    f"INSERT INTO feed_items ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    f"ON CONFLICT (feed, id) DO UPDATE SET {_CHANGING}"
)


def record_items(conn: Connection, feed: str, records: Sequence[ItemRecord]) -> None:
    """Upsert feed-table rows: the one function that writes item status.

    Goes to the driver directly: SQLAlchemy's per-row parameter processing cost more than the
    database itself on full reindexes. PostgreSQL gets COPY into a temporary table and one upsert
    from it (4-5x faster than executemany); SQLite, in-process, gets executemany.
    """
    if not records:
        return
    on_sqlite = conn.dialect.name == "sqlite"
    when = _sql_datetime(on_sqlite)
    now = when(utcnow())
    moments: dict[datetime, object] = {}
    rows = []
    for r in records:
        modified = moments.get(r.modified_at)
        if modified is None:
            modified = moments[r.modified_at] = when(r.modified_at)
        status = None if r.status is None else int(r.status)
        rows.append(
            (
                feed,
                r.id,
                r.entity,
                r.hash,
                int(r.deleted) if on_sqlite else r.deleted,
                modified,
                status,
                r.hash if r.status is ItemStatus.SENT else None,
                r.attempts,
                None if r.next_attempt_at is None else when(r.next_attempt_at),
                r.error_code,
                r.error_category,
                r.error_message,
                r.payload,
                now,
            )
        )
    if on_sqlite:
        conn.exec_driver_sql(_SQLITE_UPSERT, rows)
    else:
        _copy_upsert(conn, rows)


def _copy_upsert(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    columns = ", ".join(_COLUMNS)
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS feed_items_in (LIKE feed_items) ON COMMIT DELETE ROWS"
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY feed_items_in ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.exec_driver_sql(
        f"INSERT INTO feed_items ({columns}) SELECT {columns} FROM feed_items_in "
        f"ON CONFLICT (feed, id) DO UPDATE SET {_CHANGING}"
    )
    conn.exec_driver_sql("DELETE FROM feed_items_in")


def _sql_datetime(on_sqlite: bool) -> Callable[[datetime], object]:
    """How a DateTime value reaches the driver: SQLAlchemy's SQLite storage format, or as is."""
    if on_sqlite:
        return lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return lambda moment: moment


# --- rebuild queue: entities whose document could not be built ----------------------------------


def rebuilds_failed(
    conn: Connection,
    feed: str,
    failures: Mapping[int, str],
    schedule: Callable[[int], datetime | None],
) -> None:
    """Queue (again) the entities that could not be built, each with its error and its next attempt
    from `schedule(attempts)` (None once the attempts are used up: it waits for a change)."""
    if not failures:
        return
    r = rebuilds.c
    earlier = dict(
        conn.execute(
            select(r.entity_key, r.attempts).where(r.feed == feed, r.entity_key.in_(list(failures)))
        ).all()
    )
    now = utcnow()
    rows = []
    for entity, message in failures.items():
        attempts = earlier.get(entity, 0) + 1
        rows.append(
            {
                "feed": feed,
                "entity_key": entity,
                "attempts": attempts,
                "next_attempt_at": schedule(attempts),
                "error": message,
                "first_failed_at": now,
                "updated_at": now,
            }
        )
    insert = insert_for(conn.dialect.name, rebuilds)
    changing = ("attempts", "next_attempt_at", "error", "updated_at")
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["feed", "entity_key"],
            set_={name: insert.excluded[name] for name in changing},
        ),
        rows,
    )


def rebuilds_done(
    conn: Connection, feed: str, keys: Keys, failed: Collection[int] = ()
) -> set[int]:
    """Drop the queued entities of `keys` that built now (all but `failed`); returns them."""
    r = rebuilds.c
    if conn.execute(select(r.entity_key).where(r.feed == feed).limit(1)).first() is None:
        return set()  # the usual case: nothing queued, one cheap probe
    done = set(
        conn.scalars(select(r.entity_key).where(r.feed == feed, keys.match(r.entity_key)))
    ) - set(failed)
    if done:
        conn.execute(rebuilds.delete().where(r.feed == feed, r.entity_key.in_(list(done))))
    return done


def due_rebuilds(conn: Connection, feed: str, due_by: datetime, limit: int) -> list[int]:
    """Queued entities whose next attempt is due, the longest waiting first."""
    r = rebuilds.c
    query = (
        select(r.entity_key)
        .where(r.feed == feed, r.next_attempt_at <= due_by)
        .order_by(r.next_attempt_at)
        .limit(limit)
    )
    return list(conn.scalars(query))


def pending_rebuilds(conn: Connection) -> dict[str, int]:
    """How many entities wait for a rebuild, per feed (only feeds that have some)."""
    r = rebuilds.c
    return {
        feed: int(count)
        for feed, count in conn.execute(select(r.feed, func.count()).group_by(r.feed))
    }


def delete_feed_items(conn: Connection, feed: str) -> int:
    return conn.execute(items.delete().where(items.c.feed == feed)).rowcount
