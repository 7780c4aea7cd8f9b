"""Comparing a batch in the worker database: the feed's documents built, hashed and joined with
the feed table in one statement, so that unchanged items never reach Python."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    LargeBinary,
    Select,
    String,
    and_,
    case,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Connection

from feeds.definitions import SETTLED, Keys, StoredItem
from feeds.documents import body_bytes, content_hash
from feeds.state.tables import items, sent_hash_of


@dataclass(frozen=True, slots=True)
class Compared:
    """What comparing a batch in the database left for Python: the built items that need a
    decision (new, changed, unsettled, or asked for) with their stored rows, and the stored rows
    gone from the source; the unchanged and settled items only as a count."""

    built: list[tuple[int, str, datetime | None, bytes, str]]
    stored: dict[str, StoredItem]
    skipped: int
    newest_update: datetime | None


def compare_built(conn: Connection, statement: Select[Any]) -> Compared:
    """Run a `compare_statement`: the feed's documents built for a batch, hashed and joined with
    the feed-table rows of the same entities.

    What the statement skips (unchanged and settled items, settled tombstones) is only counted;
    everything else comes back, the body as bytes and the hashes as hex.
    """
    built_rows: list[tuple[int, str, datetime | None, bytes, str]] = []
    stored_rows: dict[str, StoredItem] = {}
    skipped = 0
    newest: datetime | None = None
    for row in conn.execute(statement):
        (skip, skipped, newest, entity, item_id, updated_at, body, hashed_hex) = row[:8]
        if skip:
            continue
        if item_id is not None:
            built_rows.append((entity, item_id, updated_at, body, hashed_hex))
        stored_id, entity_key, stored_hash, deleted, status, attempts, sent = row[8:]
        if stored_id is not None:
            stored_rows[stored_id] = StoredItem(
                entity_key, stored_hash, bool(deleted), status, attempts, sent
            )
    if isinstance(newest, str):  # SQLite: a window's result has no type to convert it by
        newest = datetime.fromisoformat(newest)
    return Compared(built_rows, stored_rows, int(skipped or 0), newest)


def compare_statement(
    dialect: str,
    feed: str,
    built: Select[Any],
    keys: Keys,
    *,
    sending: bool,
    resend: Collection[str] = (),
    resend_all: bool = False,
) -> Select[Any]:
    """One statement for `compare_built`: the feed's documents built for `keys` (`built`: entity,
    id, updated_at, body), hashed and joined with the stored rows of the same entities.

    A built item stored with the same hash, not deleted, and settled (or not `sending`) is
    skipped; so is a stored tombstone not built again. Per row: skip, skipped, newest, the built item (entity, id, updated_at, body, hash) and its
    stored row (id, entity, hash, deleted, status, attempts, sent hash). The window functions run
    before the filter, so the count covers every row; bytes and hex are made only for the rows
    that come back.
    """
    c = items.c
    documents = built.cte("documents").prefix_with("MATERIALIZED")
    hashed = (
        select(documents, content_hash(dialect, documents.c.body).label("hash"))
        .cte("hashed")
        .prefix_with("MATERIALIZED")
    )
    # The stored rows of the batch's entities, read once through the entity index; then the built
    # items with their stored row, and the stored rows not built again. (A FULL JOIN of the two
    # sets has no index on either side: SQLite compared a batch in O(n²).)
    stored = (
        select(
            c.id.label("stored_id"),
            c.entity_key,
            c.hash.label("stored_hash"),
            c.deleted,
            c.status,
            c.attempts,
            sent_hash_of(),
        )
        .where(c.feed == feed, keys.match(c.entity_key))
        .cte("stored")
        # SQLite joins a materialized CTE by scanning it per built row: there it stays a view of
        # the table, its two uses two index lookups.
        .prefix_with("MATERIALIZED" if dialect == "postgresql" else "NOT MATERIALIZED")
    )
    s = stored.c
    stored_columns = (s.stored_id, s.entity_key, s.stored_hash, s.deleted, s.status, s.attempts)
    with_stored = select(
        hashed.c.entity,
        hashed.c.id,
        hashed.c.updated_at,
        hashed.c.body,
        hashed.c.hash,
        *stored_columns,
        s.sent_hash,
    ).select_from(hashed.outerjoin(stored, s.stored_id == hashed.c.id))
    # NOT IN: PostgreSQL hashes the built ids once (their estimate comes from the source query, not
    # from the feed table's statistics), SQLite builds the list once; a correlated NOT EXISTS was
    # planned as a rescan of the built items per stored row.
    built_again = s.stored_id.in_(select(hashed.c.id).where(hashed.c.id.is_not(None)))
    gone = select(
        literal(None, BigInteger).label("entity"),
        literal(None, String).label("id"),
        literal(None, DateTime).label("updated_at"),
        literal(None, String).label("body"),
        literal(None, LargeBinary).label("hash"),
        *stored_columns,
        s.sent_hash,
    ).where(~built_again)
    pairs = union_all(with_stored, gone).subquery("pairs")
    p = pairs.c
    settled: ColumnElement[bool] = p.status.in_([int(s) for s in SETTLED])
    if not sending:
        settled = or_(settled, true())
    asked = (
        true()
        if resend_all
        else (or_(p.id.in_(list(resend)), p.stored_id.in_(list(resend))) if resend else false())
    )
    unchanged = and_(
        p.id.is_not(None),
        p.stored_hash == p.hash,
        p.deleted == false(),
        settled,
        not_(asked),
    )
    tombstone = and_(p.id.is_(None), p.deleted == true(), settled, not_(asked))
    joined = select(
        pairs,
        # NULL (no stored row) is no skip: CASE makes it false.
        case((or_(unchanged, tombstone), 1), else_=0).label("skip"),
        func.sum(case((unchanged, 1), else_=0)).over().label("skipped"),
        func.max(p.updated_at).over().label("newest"),
        func.row_number().over().label("n"),
    ).subquery("joined")
    j = joined.c
    return select(
        j.skip,
        j.skipped,
        j.newest,
        j.entity,
        j.id,
        j.updated_at,
        body_bytes(dialect, j.body),
        _hex(dialect, j.hash),
        j.stored_id,
        j.entity_key,
        _hex(dialect, j.stored_hash),
        j.deleted,
        j.status,
        j.attempts,
        _hex(dialect, j.sent_hash),
    ).where(or_(j.skip == 0, j.n == 1))


def _hex(dialect: str, value: ColumnElement[Any]) -> ColumnElement[str]:
    """A hash as lowercase hex text, NULL for NULL (SQLite's hex() gives '' for NULL, and for the
    empty hash of an item that never built)."""
    if dialect == "postgresql":
        return func.encode(value, literal_column("'hex'"), type_=String)
    return type_coerce(case((value.is_(None), None), else_=func.lower(func.hex(value))), String)
