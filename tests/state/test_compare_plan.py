"""The compare statement reads the feed table once per batch, for a key range (a full reindex's
batch) and for a list of ids (a partial sync's), and on SQLite through its indexes: a plan that
scans the feed table, or the stored rows per built item, makes every batch cost as much as the
whole feed (SQLite once did, with the stored rows materialized: an unchanged re-run 4x slower)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from feeds.commerce import demo
from feeds.context import Context
from feeds.definitions import Keys
from feeds.documents import Json
from feeds.pipeline import indexer
from feeds.state.compare_built import compare_statement

BATCHES = {
    "key range": Keys(lo=2_000, hi=2_200),
    "ids": Keys(ids=tuple(range(3, 6_000, 37))),
}


@contextmanager
def explained(conn: Connection) -> Iterator[None]:
    """Statements run on `conn` return their plan instead of rows."""
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "

    def explain(
        _conn: Connection, _cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> tuple[str, Any]:
        return prefix + statement, parameters

    event.listen(conn, "before_cursor_execute", explain, retval=True)
    try:
        yield
    finally:
        event.remove(conn, "before_cursor_execute", explain)


def plan_of(ctx: Context, keys: Keys) -> list[str]:
    feed = ctx.registry.get("products")
    assert feed.query is not None
    with ctx.db.connect() as conn:
        dialect = conn.dialect.name
        statement = compare_statement(
            dialect, "products", feed.query(keys, Json(dialect)), keys, sending=True
        )
        with explained(conn):
            result = conn.execute(statement)
            # The plan's rows, read from the driver: they are not the statement's columns.
            return [str(row[-1]) for row in result.cursor.fetchall()]


@pytest.mark.parametrize("batch", list(BATCHES))
def test_the_compare_statement_reads_the_feed_table_once_through_its_indexes(
    ctx: Context, batch: str
) -> None:
    demo.seed(ctx.source, 6_000, 1)
    outcome = indexer.reindex(ctx, ctx.registry.get("products"))  # ends with the statistics taken
    assert outcome.counts.new == 6_000

    plan = plan_of(ctx, BATCHES[batch])

    shown = "\n".join(plan)
    if ctx.db.dialect.name == "sqlite":
        assert not [line for line in plan if line.startswith(("SCAN feed_items", "SCAN stored"))], (
            shown
        )
        by_id = "SEARCH feed_items USING INDEX sqlite_autoindex_feed_items_1 (feed=? AND id=?)"
        assert any(line.startswith(by_id) for line in plan), shown
        assert any("ix_feed_items_entity" in line for line in plan), shown
    else:
        # Index or sequential scan is the planner's choice by size; reading the table once is ours.
        assert shown.count(" on feed_items") == 1, shown
