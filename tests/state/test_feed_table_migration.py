"""Migration 0010 compacts the feed table (hashes as bytes, no stored sent hash in status 200)
without changing what any row means: after an upgrade from the earlier layout, nothing unchanged
is sent again, and an item changed back to what the destination holds is not sent either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from feeds.context import Context
from feeds.definitions import ItemStatus, Keys
from feeds.pipeline import indexer
from feeds.state import feed_items as store
from feeds.state.database import MIGRATIONS_DIR, current_revision, head_revision
from tests.conftest import library_context
from worker.testing.destination_server import DestinationServer
from worker.testing.reconcile import reconcile

BEFORE = "0009"  # the last revision with the earlier feed-table layout


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path, books=8)
    yield ctx
    ctx.close()


def migrate(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    if revision == "heads":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


def rows(ctx: Context) -> dict[str, tuple[str, str | None, int | None]]:
    """Per item id: its hash, the hash the destination last accepted, its status."""
    with ctx.db.connect() as conn:
        stored = store.stored_items(conn, "books", Keys(lo=0, hi=None))
    return {i: (s.hash, s.sent_hash, s.status) for i, s in stored.items()}


def retitle(ctx: Context, book_no: int, title: str) -> None:
    with ctx.source.begin() as conn:
        conn.execute(
            text("UPDATE books SET title = :t WHERE book_no = :n"), {"t": title, "n": book_no}
        )


def test_the_upgrade_keeps_every_hash_so_nothing_unchanged_is_sent_again(
    lib: Context, destination: DestinationServer
) -> None:
    feed = lib.registry.get("books")
    destination.reject(["book-3"])
    indexer.reindex(lib, feed)
    # book-4 changes, the destination rejects the new version: it keeps the hash it last accepted.
    retitle(lib, 4, "Second edition")
    destination.reject(["book-4"])
    indexer.reindex(lib, feed)
    before = rows(lib)
    assert before["book-4"][2] == ItemStatus.REJECTED
    assert before["book-4"][1] is not None and before["book-4"][1] != before["book-4"][0]

    migrate(lib.db, BEFORE)  # the earlier layout: 32 hex characters, a sent hash in every row
    columns = {c["name"]: c["type"] for c in inspect(lib.db).get_columns("feed_items")}
    assert getattr(columns["hash"], "length", None) == 32
    with lib.db.connect() as conn:
        old = dict(conn.execute(text("SELECT id, sent_hash FROM feed_items")).all())
    assert old["book-1"] == before["book-1"][0] and old["book-4"] == before["book-4"][1]

    migrate(lib.db, "heads")
    assert current_revision(lib.db) == head_revision(lib.db)
    assert rows(lib) == before
    with lib.db.connect() as conn:
        stored_sent = dict(conn.execute(text("SELECT id, sent_hash FROM feed_items")).all())
    assert stored_sent["book-1"] is None  # implied by status 200, not stored
    assert stored_sent["book-4"] is not None

    destination.clear_faults()
    delivered = destination.count("books")
    retitle(lib, 4, "Book 4")  # back to the version the destination holds
    outcome = indexer.reindex(lib, feed)
    assert destination.count("books") == delivered  # nothing sent again
    # All skipped: book-3 still rejected and unchanged, book-4 recorded as sent without a request.
    assert outcome is not None and outcome.counts.skipped == 8
    after = rows(lib)
    assert after["book-4"][2] == ItemStatus.SENT and after["book-3"][2] == ItemStatus.REJECTED
    result = reconcile(lib, destination.holdings, destination.duplicates, feeds=["books"])
    assert result.ok, result
