"""Changes committed out of version order (PostgreSQL): an application transaction may hold a
changelog version below one another transaction already committed. No run may move the pointer
past it while it is open, or its change would never be synced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from feeds.context import Context
from feeds.pipeline import indexer
from feeds.state import indexer_state
from feeds.tracking import changelog
from tests.conftest import library_context
from worker.testing.destination_server import DestinationServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def lib(postgres_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(postgres_url, destination.url, tmp_path)
    indexer.reindex(ctx, ctx.registry.get("books"))
    yield ctx
    ctx.close()


def sql(ctx: Context, statement: str) -> None:
    with ctx.source.begin() as conn:
        conn.execute(text(statement))


@pytest.fixture
def open_transaction(lib: Context) -> Iterator[Callable[[str], Connection]]:
    """Opens an application transaction that has written a statement (and its changelog rows);
    whatever the test leaves open is rolled back before the schema is dropped."""
    opened: list[Connection] = []

    def open_(statement: str) -> Connection:
        conn = lib.source.connect()
        opened.append(conn)
        conn.begin()
        conn.execute(text(statement))
        return conn

    yield open_
    for conn in opened:
        conn.close()


def pointer(ctx: Context) -> int:
    with ctx.db.connect() as conn:
        return indexer_state.get_state(conn, "library_books").version_id


def title(destination: DestinationServer, book: int) -> object:
    return destination.accepted["books"][f"book-{book}"]["data"]["title"]


def test_a_change_committed_after_a_later_one_is_synced_not_skipped(
    lib: Context, destination: DestinationServer, open_transaction: Callable[[str], Connection]
) -> None:
    slow = open_transaction("DELETE FROM books WHERE book_no = 4")  # the lower version
    sql(lib, "UPDATE books SET title = 'Later' WHERE book_no = 5")  # committed first
    started = time.monotonic()
    indexer.update_all_views(lib)  # the deletion is still open: nothing past it is covered
    assert time.monotonic() - started >= changelog.WRITERS_WAIT_S
    assert title(destination, 5) == "Book 5"
    slow.commit()

    indexer.update_all_views(lib)
    assert destination.holdings("books")["book-4"][1] is True  # deleted
    assert title(destination, 5) == "Later"


def test_a_run_waits_for_a_transaction_that_is_about_to_commit(
    lib: Context, destination: DestinationServer, open_transaction: Callable[[str], Connection]
) -> None:
    slow = open_transaction("UPDATE books SET title = 'Slow' WHERE book_no = 2")
    sql(lib, "UPDATE books SET title = 'Fast' WHERE book_no = 3")
    committer = threading.Timer(0.2, slow.commit)
    committer.start()
    indexer.update_all_views(lib)
    committer.join()
    assert (title(destination, 2), title(destination, 3)) == ("Slow", "Fast")


def test_a_version_rolled_back_holds_nothing_up(
    lib: Context, destination: DestinationServer, open_transaction: Callable[[str], Connection]
) -> None:
    rolled_back = open_transaction("UPDATE books SET title = 'Never' WHERE book_no = 2")
    rolled_back.rollback()
    sql(lib, "UPDATE books SET title = 'After the gap' WHERE book_no = 3")
    indexer.update_all_views(lib)
    assert (title(destination, 2), title(destination, 3)) == ("Book 2", "After the gap")
    with lib.source.connect() as conn:
        assert pointer(lib) == changelog.current_version(conn, lib.registry.get("books"))


def test_a_full_reindex_does_not_cover_a_change_still_open_when_it_started(
    lib: Context, destination: DestinationServer, open_transaction: Callable[[str], Connection]
) -> None:
    before = pointer(lib)
    slow = open_transaction("DELETE FROM books WHERE book_no = 6")
    sql(lib, "UPDATE books SET title = 'Later' WHERE book_no = 7")
    indexer.reindex(lib, lib.registry.get("books"))  # reads book 6 before the deletion commits
    assert pointer(lib) == before  # the open deletion's version is not covered
    assert destination.holdings("books")["book-6"][1] is False
    slow.commit()

    indexer.update_all_views(lib)
    assert destination.holdings("books")["book-6"][1] is True
