"""A developer's own feed on their own schema, declared in a module named by `feed_modules`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from config.context import open_context
from feeds.context import Context
from feeds.pipeline import indexer
from tests.conftest import make_settings
from tests.library_feeds import authors, book_tags, books, metadata


def exported(export_dir: Path, feed: str) -> list[dict]:
    path = export_dir / f"{feed}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


@pytest.fixture
def library(db_url: str, export_dir: Path, tmp_path: Path) -> Iterator[Context]:
    config = tmp_path / "feedsync.toml"
    config.write_text(
        'feed_modules = ["tests.library_feeds"]\nbuiltin_feeds = false\n\n[feeds.books]\nbatch_size = 2\ncollect_batch_size = 2\n'
    )
    ctx = open_context(make_settings(db_url, export_dir, config))
    metadata.create_all(ctx.source)
    with ctx.source.begin() as conn:
        conn.execute(authors.insert(), [{"id": 1, "name": "Le Guin"}, {"id": 2, "name": "Lem"}])
        conn.execute(
            books.insert(),
            [
                {"book_no": 10, "title": "The Dispossessed", "author_id": 1},
                {"book_no": 11, "title": "Solaris", "author_id": 2},
                {"book_no": 12, "title": "The Lathe of Heaven", "author_id": 1},
            ],
        )
        conn.execute(book_tags.insert(), [{"book_no": 11, "tag": "classic"}])
    yield ctx
    ctx.close()


def test_custom_feed_is_listed_instead_of_the_builtin_ones(library: Context) -> None:
    assert library.registry.supported() == ["library_books"]


def test_full_reindex_of_custom_feed_exports_every_book(library: Context, export_dir: Path) -> None:
    feed = library.registry.get("books")
    outcome = indexer.reindex(library, feed)
    assert outcome.counts.new == 3
    items = {i["id"]: i for i in exported(export_dir, "books")}
    assert items["book-11"]["data"] == {"title": "Solaris", "author": "Lem", "tags": ["classic"]}
    assert items["book-10"]["deleted"] is False


def test_custom_feed_changes_reach_the_destination_through_its_triggers(
    library: Context, export_dir: Path
) -> None:
    feed = library.registry.get("books")
    indexer.ensure_subscriptions(library)
    indexer.reindex(library, feed)
    with library.source.begin() as conn:
        conn.execute(
            text("UPDATE authors SET name = 'Ursula K. Le Guin' WHERE id = 1")
        )  # two books
        conn.execute(text("INSERT INTO book_tags (book_no, tag) VALUES (10, 'utopia')"))
        conn.execute(text("DELETE FROM books WHERE book_no = 11"))
    outcomes = indexer.update_all_views(library)
    counts = outcomes[0].counts
    assert (counts.updated, counts.deleted, counts.new) == (2, 1, 0)
    last = {i["id"]: i for i in exported(export_dir, "books")[3:]}
    assert last["book-10"]["data"] == {
        "title": "The Dispossessed",
        "author": "Ursula K. Le Guin",
        "tags": ["utopia"],
    }
    assert last["book-12"]["data"]["author"] == "Ursula K. Le Guin"
    assert last["book-11"]["deleted"] is True and last["book-11"]["data"] is None


def test_full_reindex_shared_by_two_processes_gives_the_same_result(
    db_url: str, export_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "parallel.toml"
    config.write_text(
        'feed_modules = ["tests.library_feeds"]\nbuiltin_feeds = false\n'
        "[feeds.books]\ncollect_batch_size = 7\nreindex_processes = 2\n"
    )
    ctx = open_context(make_settings(db_url, export_dir, config))
    metadata.create_all(ctx.source)
    with ctx.source.begin() as conn:
        conn.execute(authors.insert(), [{"id": 1, "name": "A"}])
        conn.execute(
            books.insert(),
            [{"book_no": n, "title": f"T{n}", "author_id": 1} for n in range(1, 101)],
        )
    feed = ctx.registry.get("books")
    assert indexer.reindex(ctx, feed).counts.new == 100
    with ctx.source.begin() as conn:
        conn.execute(text("DELETE FROM books WHERE book_no > 90"))
        conn.execute(text("UPDATE books SET title = 'new' WHERE book_no = 5"))
    counts = indexer.reindex(ctx, feed).counts
    assert (counts.updated, counts.deleted, counts.skipped, counts.new) == (1, 10, 89, 0)
    ids = [item["id"] for item in exported(export_dir, "books")]
    assert len(ids) == 111 and len(set(ids)) == 100
    ctx.close()
