"""Reading the feed table for people: rows per item status, the items of one status, one item by
id or entity key. The pipeline writes the table (`feed_items.record_items`); this only reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from feeds.definitions import ItemStatus
from feeds.state.tables import items, sent_hash_of

# The statuses an item waits in for the pipeline to try again: a resend (2) or a rebuild (0).
WAITING = (int(ItemStatus.RETRYABLE), int(ItemStatus.APP_ERROR))


@dataclass(frozen=True)
class ItemRow:
    """One feed-table row as shown to people (the payload, if kept, is read separately)."""

    feed: str
    id: str
    entity_key: int
    hash: str
    sent_hash: str | None
    deleted: bool
    modified_at: datetime
    status: int | None
    attempts: int
    next_attempt_at: datetime | None
    error_code: str | None
    error_category: str | None
    error_message: str | None
    updated_at: datetime


_SHOWN = [
    sent_hash_of() if c.name == "sent_hash" else c for c in items.columns if c.name != "payload"
]


def _row(row: RowMapping) -> ItemRow:
    return ItemRow(**{**row, "deleted": bool(row["deleted"])})


def status_counts(conn: Connection) -> dict[str, dict[int | None, int]]:
    """Rows per feed and item status (None: never sent): one pass over the (feed, status) index."""
    c = items.c
    counts: dict[str, dict[int | None, int]] = {}
    for feed, status, n in conn.execute(
        select(c.feed, c.status, func.count()).group_by(c.feed, c.status)
    ):
        counts.setdefault(feed, {})[status] = int(n)
    return counts


def stuck_counts(
    conn: Connection, feeds: Sequence[str], before: datetime
) -> dict[str, dict[int, int]]:
    """Per feed, the items in status 2 or 0 whose last attempt was before `before`."""
    c = items.c
    # Naming the feeds lets the (feed, status) index find the few waiting rows: without them,
    # PostgreSQL scans the whole table (100 ms on 1M rows, against 10 ms).
    query = (
        select(c.feed, c.status, func.count())
        .where(c.feed.in_(list(feeds)), c.status.in_(WAITING), c.updated_at < before)
        .group_by(c.feed, c.status)
    )
    counts: dict[str, dict[int, int]] = {}
    for feed, status, n in conn.execute(query):
        counts.setdefault(feed, {})[int(status)] = int(n)
    return counts


def items_page(
    conn: Connection, feed: str, status: int | None, *, limit: int, offset: int = 0
) -> tuple[list[ItemRow], int]:
    """The items of one feed in one status (None: never sent), by id, and how many there are."""
    c = items.c
    where: list[ColumnElement[bool]] = [
        c.feed == feed,
        c.status.is_(None) if status is None else c.status == status,
    ]
    total = int(conn.scalar(select(func.count()).select_from(items).where(*where)) or 0)
    query = select(*_SHOWN).where(*where).order_by(c.id).limit(limit).offset(offset)
    return [_row(r) for r in conn.execute(query).mappings()], total


def find_items(conn: Connection, feeds: Sequence[str], text: str, limit: int = 50) -> list[ItemRow]:
    """The items of `feeds` whose id is `text`, or whose entity key it is (when it is a number):
    primary-key and (feed, entity_key) index lookups, never a scan."""
    c = items.c
    wanted: list[ColumnElement[bool]] = [c.id == text]
    if text.isascii() and text.isdigit() and len(text) <= 18:
        wanted.append(c.entity_key == int(text))
    found: dict[tuple[str, str], ItemRow] = {}
    for condition in wanted:
        query = select(*_SHOWN).where(c.feed.in_(list(feeds)), condition).limit(limit)
        for row in conn.execute(query).mappings():
            found.setdefault((row["feed"], row["id"]), _row(row))
    return sorted(found.values(), key=lambda r: (r.feed, r.id))[:limit]


def payload(conn: Connection, feed: str, item_id: str) -> bytes | None:
    """The document the feed table keeps for an item (legacy export mode only), else None."""
    c = items.c
    value = conn.scalar(select(c.payload).where(c.feed == feed, c.id == item_id))
    return None if value is None else bytes(value)
