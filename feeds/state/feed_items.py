"""The worker database: indexer state, the feed table, and locks (SQLAlchemy models and queries)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    String,
    any_,
    bindparam,
    case,
    func,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from feeds.clock import utcnow
from feeds.definitions import ItemStatus, Keys, StoredItem
from feeds.state.database import insert_for
from feeds.state.tables import Digest, items, rebuilds, sent_hash_of

# --- feed table ----------------------------------------------------------------------------


def stored_items(conn: Connection, feed: str, keys: Keys) -> dict[str, StoredItem]:
    """The feed-table rows of the entities in `keys` (a key range also covers entities gone from the source)."""
    c = items.c
    query = select(
        c.id, c.entity_key, c.hash, c.deleted, c.status, c.attempts, sent_hash_of()
    ).where(c.feed == feed, keys.match(c.entity_key))
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


class ItemRecord(NamedTuple):
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


# The order of the values `record_items` writes: the table's own (see FeedItemRow).
_COLUMNS = [c.name for c in items.columns]
assert _COLUMNS == [
    "entity_key", "modified_at", "updated_at", "next_attempt_at", "status", "attempts", "deleted",
    "feed", "id", "hash", "sent_hash", "error_code", "error_category", "error_message", "payload",
]  # fmt: skip
# The PostgreSQL type of each of those columns, for binary COPY: read off the table, not kept by hand.
_COPY_TYPES = [
    str(c.type.compile(dialect=postgresql.dialect())).split("(")[0].lower() for c in items.columns
]
_SENT = int(ItemStatus.SENT)
# A failed send of a newer version keeps the hash the destination last accepted: the stored sent
# hash, or the hash itself while the item was in status 200. In status 200 none is stored.
_KEEP_SENT = (
    f"CASE WHEN excluded.status = {_SENT} THEN NULL ELSE COALESCE(feed_items.sent_hash, "
    f"CASE WHEN feed_items.status = {_SENT} THEN feed_items.hash END) END"
)
_CHANGING = ", ".join(
    f"{c} = {_KEEP_SENT}" if c == "sent_hash" else f"{c} = excluded.{c}"
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
                r.entity,
                modified,
                now,
                None if r.next_attempt_at is None else when(r.next_attempt_at),
                status,
                r.attempts,
                int(r.deleted) if on_sqlite else r.deleted,
                feed,
                r.id,
                bytes.fromhex(r.hash),
                None,  # the sent hash: implied by status 200, else kept by the upsert
                r.error_code,
                r.error_category,
                r.error_message,
                r.payload,
            )
        )
    if on_sqlite:
        conn.exec_driver_sql(_SQLITE_UPSERT, rows)
    else:
        _copy_upsert(conn, rows)


def rehash(conn: Connection, feed: str, hashes: Mapping[str, tuple[str, str | None]]) -> None:
    """Store today's hash (and sent hash) of unchanged items stored with an earlier version's."""
    c = items.c
    conn.execute(
        items.update()
        .where(c.feed == feed, c.id == bindparam("item_id"))
        .values(
            hash=bindparam("new_hash"),
            sent_hash=case((c.status == _SENT, None), else_=bindparam("new_sent", type_=Digest())),
        ),
        [
            {"item_id": item_id, "new_hash": hashed, "new_sent": sent}
            for item_id, (hashed, sent) in hashes.items()
        ],
    )


def _copy_upsert(conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
    columns = ", ".join(_COLUMNS)
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS feed_items_in (LIKE feed_items) ON COMMIT DELETE ROWS"
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    # Binary: a third of the CPU of text COPY per row (no value formatted as text in Python).
    with cursor.copy(f"COPY feed_items_in ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COPY_TYPES)
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
