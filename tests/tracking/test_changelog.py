"""Change tracking: triggers on SQLite and PostgreSQL, backlog, pointer safety, cleaning."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select, text

from config.context import open_context
from feeds import definitions
from feeds.context import Context
from feeds.definitions import IndexerMode, RunStatus
from feeds.errors import DestinationError, SourceSchemaError
from feeds.export.file import FileDestination
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.pipeline.diff import FeedItem
from feeds.state import feed_items as store
from feeds.state import indexer_state
from feeds.tracking import changelog
from tests.conftest import as_dicts, library_context, make_settings
from tests.pipeline.test_custom_feed import exported


@pytest.fixture
def library(db_url: str, export_dir: Path, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(
        db_url, f"file://{export_dir}", tmp_path, books=5, batch_size=2, collect_batch_size=2
    )
    yield ctx
    ctx.close()


def logged(ctx: Context) -> list[int]:
    """Entity ids in the changelog, in version order."""
    table = changelog.changelog_table(ctx.registry.get("books"))
    with ctx.source.connect() as conn:
        return list(conn.scalars(select(table.c.entity_id).order_by(table.c.version_id)))


def sql(ctx: Context, statement: str) -> None:
    with ctx.source.begin() as conn:
        conn.execute(text(statement))


def state(ctx: Context) -> indexer_state.State:
    with ctx.db.connect() as conn:
        return indexer_state.get_state(conn, "library_books")


def test_insert_update_delete_write_the_entity_ids(library: Context) -> None:
    sql(library, "INSERT INTO books (book_no, title, author_id) VALUES (9, 'New', 1)")
    sql(library, "UPDATE books SET title = 'Renamed' WHERE book_no = 2")
    sql(library, "DELETE FROM books WHERE book_no = 3")
    assert logged(library) == [9, 2, 3]


def test_update_that_changes_nothing_writes_nothing(library: Context) -> None:
    sql(library, "UPDATE books SET title = title WHERE book_no = 2")
    sql(library, "UPDATE authors SET name = 'Le Guin'")
    assert logged(library) == []


def test_update_moving_a_row_logs_old_and_new_entity(library: Context) -> None:
    sql(library, "INSERT INTO book_tags (book_no, tag) VALUES (1, 'x')")
    sql(library, "UPDATE book_tags SET book_no = 4 WHERE book_no = 1")
    assert sorted(logged(library)[1:]) == [1, 4]


def test_one_to_many_watch_logs_every_affected_entity(library: Context) -> None:
    sql(library, "UPDATE authors SET name = 'Ursula' WHERE id = 1")
    assert sorted(logged(library)) == [1, 2, 3, 4, 5]


def test_backlog_counts_distinct_entities_after_the_pointer(library: Context) -> None:
    feed = library.registry.get("books")
    sql(library, "UPDATE books SET title = 'a' WHERE book_no = 2")
    sql(library, "UPDATE books SET title = 'b' WHERE book_no = 2")
    sql(library, "UPDATE books SET title = 'c' WHERE book_no = 4")
    with library.source.connect() as conn:
        assert changelog.backlog(conn, feed, state(library).version_id) == 2


def test_realtime_mode_keeps_logging_changes_and_signals_them_on_postgresql(
    library: Context,
) -> None:
    # Realtime keeps the changelog: it is what makes a change durable while no listener runs.
    feed = library.registry.get("books")
    assert indexer.set_mode(library, feed, IndexerMode.REALTIME) is IndexerMode.SCHEDULE
    with library.source.connect() as conn:
        assert changelog.is_subscribed(conn, feed)
        assert changelog.notifies(conn, feed) is (conn.dialect.name == "postgresql")
    sql(library, "UPDATE books SET title = 'logged in realtime' WHERE book_no = 1")
    assert logged(library) == [1]
    indexer.set_mode(library, feed, IndexerMode.SCHEDULE)
    with library.source.connect() as conn:
        assert changelog.is_subscribed(conn, feed)
        assert not changelog.notifies(conn, feed)
    sql(library, "UPDATE books SET title = 'seen' WHERE book_no = 1")
    assert logged(library) == [1, 1]
    assert state(library).version_id == 0  # the backlog carried over both switches


def test_changelog_rows_carry_the_time_they_were_logged(library: Context) -> None:
    feed = library.registry.get("books")
    sql(library, "UPDATE books SET title = 'dated' WHERE book_no = 2")
    with library.source.connect() as conn:
        age = changelog.oldest_pending_age(conn, feed, 0)
        assert age is not None and 0 <= age < 5
        assert (
            changelog.oldest_pending_age(conn, feed, changelog.current_version(conn, feed)) is None
        )


def test_partial_reindex_advances_the_pointer_to_the_processed_version(library: Context) -> None:
    indexer.reindex(library, library.registry.get("books"))
    sql(library, "UPDATE books SET title = 'changed' WHERE book_no = 2")
    [outcome] = indexer.update_all_views(library)
    assert outcome.counts.updated == 1
    with library.source.connect() as conn:
        assert state(library).version_id == changelog.current_version(
            conn, library.registry.get("books")
        )


class FailingAfter:
    """A file destination that fails once `ok_batches` batches went through: a crash mid-run."""

    def __init__(self, directory: Path, ok_batches: int) -> None:
        self.inner = FileDestination(directory)
        self.name = self.inner.name
        self.left = ok_batches

    def send(self, feed: str, items: Sequence[FeedItem]) -> list:
        if self.left == 0:
            raise DestinationError("destination went away")
        self.left -= 1
        return self.inner.send(feed, items)

    def close(self) -> None:
        pass


def test_crash_mid_partial_reindex_keeps_the_unprocessed_backlog(
    library: Context, export_dir: Path
) -> None:
    feed = library.registry.get("books")
    indexer.reindex(library, feed)
    for n in range(1, 6):  # five entities; batch size 2 → three chunks
        sql(library, f"UPDATE books SET title = 'v2 {n}' WHERE book_no = {n}")
    library._destinations[library.settings.destination("books")] = FailingAfter(
        export_dir, ok_batches=1
    )
    [failed] = indexer.update_all_views(library)  # the job reports it; other feeds would go on
    assert failed.status is RunStatus.ERROR and failed.message is not None
    assert "destination went away" in failed.message
    # The first chunk (books 1, 2) was committed with its pointer; the rest is still in the backlog.
    with library.source.connect() as conn:
        assert changelog.backlog(conn, feed, state(library).version_id) == 3
    library._destinations.clear()
    [outcome] = indexer.update_all_views(library)
    assert outcome.counts.updated == 3
    titles = {i["id"]: i["data"]["title"] for i in exported(export_dir, "books") if i["data"]}
    assert all(titles[f"book-{n}"] == f"v2 {n}" for n in range(1, 6))


def test_crash_before_commit_resends_instead_of_losing(
    library: Context, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = library.registry.get("books")
    indexer.reindex(library, feed)
    sql(library, "UPDATE books SET title = 'sent twice' WHERE book_no = 1")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between send and commit")

    monkeypatch.setattr(store, "record_items", crash)
    [failed] = indexer.update_all_views(library)
    assert failed.status is RunStatus.ERROR and "killed between send and commit" in str(
        failed.message
    )
    monkeypatch.undo()
    [outcome] = indexer.update_all_views(library)
    assert outcome.counts.updated == 1
    sent = [
        i
        for i in exported(export_dir, "books")
        if i["id"] == "book-1" and i["data"]["title"] == "sent twice"
    ]
    assert len(sent) == 2  # sent before the crash, and again after: at least once, never lost


def test_full_reindex_failure_leaves_indexer_invalid(library: Context, export_dir: Path) -> None:
    library._destinations[library.settings.destination("books")] = FailingAfter(
        export_dir, ok_batches=0
    )
    with pytest.raises(DestinationError):
        indexer.reindex(library, library.registry.get("books"))
    assert state(library).status is definitions.IndexerStatus.INVALID


def test_cleaning_removes_processed_rows_but_keeps_the_newest_processed(library: Context) -> None:
    feed = library.registry.get("books")
    indexer.reindex(library, feed)
    for n in (1, 2, 3):
        sql(library, f"UPDATE books SET title = 'x{n}' WHERE book_no = {n}")
    indexer.update_all_views(library)
    sql(library, "UPDATE books SET title = 'pending' WHERE book_no = 5")
    removed = indexer.clean_all_changelogs(library)
    assert removed == {"books": 2}
    assert logged(library) == [3, 5]
    with library.source.connect() as conn:
        assert changelog.backlog(conn, feed, state(library).version_id) == 1


def test_subscribing_without_the_source_tables_names_them(
    db_url: str, export_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "feedsync.toml"
    config.write_text('feed_modules = ["tests.library_feeds"]\nbuiltin_feeds = false\n')
    ctx = open_context(make_settings(db_url, export_dir, config))
    with pytest.raises(
        SourceSchemaError,
        match="watches source tables that do not exist: books, book_tags, authors",
    ):
        changelog.subscribe(ctx.source, ctx.registry.get("books"))
    ctx.close()


def test_a_row_that_cannot_be_built_fails_only_its_entity_and_is_reported(
    library: Context, export_dir: Path
) -> None:
    feed = library.registry.get("books")
    indexer.reindex(library, feed)
    sql(library, "UPDATE books SET title = '\ufffdbad' WHERE book_no = 3")
    sql(library, "UPDATE books SET title = 'fine' WHERE book_no = 4")
    [outcome] = indexer.update_all_views(library)
    assert (outcome.counts.updated, outcome.counts.failed, outcome.counts.deleted) == (1, 1, 0)
    with library.source.connect() as conn:
        assert changelog.backlog(conn, feed, state(library).version_id) == 0
    with library.db.connect() as conn:
        row = conn.execute(
            text("SELECT status, error_code, error_message FROM feed_items WHERE id = 'book-3'")
        ).one()
        [error] = as_dicts(read_model.list_errors(conn, feed="books"))
    assert row == (0, "BUILD_FAILED", "ValueError: book 3 has an undecodable title")
    assert (error["item_id"], error["category"], error["code"]) == ("3", "other", "BUILD_FAILED")
    assert not [i for i in exported(export_dir, "books") if i["id"] == "book-3" and i["deleted"]]
    sql(library, "UPDATE books SET title = 'repaired' WHERE book_no = 3")
    [outcome] = indexer.update_all_views(library)
    assert outcome.counts.updated == 1
    with library.db.connect() as conn:
        assert (
            conn.execute(text("SELECT status FROM feed_items WHERE id = 'book-3'")).scalar() == 200
        )
        assert (
            as_dicts(read_model.list_errors(conn, feed="books")) == []
        )  # built now: its error is resolved


@pytest.mark.postgres
def test_two_processes_subscribing_a_feed_at_once_both_succeed(
    postgres_url: str, export_dir: Path, tmp_path: Path
) -> None:
    """A fleet's first minute: two jobs on two workers install the same feed's changelog."""
    ctx = library_context(postgres_url, f"file://{export_dir}", tmp_path, books=2)
    books = ctx.registry.get("books")
    failures: list[BaseException] = []
    for _ in range(5):
        with ctx.source.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE "{changelog.changelog_name(books)}" CASCADE')
        start = threading.Barrier(2)

        def subscribe(start: threading.Barrier) -> None:
            start.wait()
            try:
                changelog.subscribe(ctx.source, books)
            except Exception as exc:  # what the second of two concurrent CREATEs may raise
                failures.append(exc)

        threads = [threading.Thread(target=subscribe, args=(start,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []
    with ctx.source.connect() as conn:
        assert changelog.is_subscribed(conn, books)
    ctx.close()
