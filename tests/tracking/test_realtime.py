"""Realtime mode: notify() and the listener (PostgreSQL NOTIFY, SQLite polling), on both databases."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select, text

from feeds import errors
from feeds.context import Context
from feeds.definitions import IndexerMode, Operation
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.pipeline.run import lock_name
from feeds.state.indexer_state import get_state
from feeds.state.locks import Lock
from feeds.tracking import changelog, realtime
from tests.conftest import as_dicts, library_context
from tests.pipeline.test_custom_feed import exported
from worker import logs as worker_logs
from worker.realtime import Listener, sync_in_process

FAST = 2.0  # seconds a realtime change may take to reach the destination (the SPEC §1 promise)


@pytest.fixture
def library(db_url: str, export_dir: Path, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, f"file://{export_dir}", tmp_path, books=6, batch_size=50)
    books = ctx.registry.get("books")
    indexer.reindex(ctx, books)
    indexer.set_mode(ctx, books, IndexerMode.REALTIME)
    yield ctx
    ctx.close()


@pytest.fixture
def listening(library: Context) -> Iterator[Listener]:
    """The realtime listener running in a thread, syncing in-process, as in the embedded run."""
    listener = Listener(library, sync_in_process(library))
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    assert listener.ready.wait(10), "the listener did not start"
    time.sleep(0.3)  # let its first poll pass (it syncs what was pending at start)
    yield listener
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def sql(ctx: Context, statement: str) -> None:
    with ctx.source.begin() as conn:
        conn.execute(text(statement))


def title_of(export_dir: Path, book: int) -> str | None:
    versions = [i for i in exported(export_dir, "books") if i["id"] == f"book-{book}"]
    return versions[-1]["data"]["title"] if versions and versions[-1]["data"] else None


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def partial_runs(ctx: Context) -> list[dict[str, object]]:
    with ctx.db.connect() as conn:
        return as_dicts(
            read_model.list_runs(conn, feed="books", operation=Operation.PARTIAL_SYNC.value)
        )


def test_a_realtime_change_reaches_the_destination_within_seconds(
    library: Context, listening: Listener, export_dir: Path
) -> None:
    # PostgreSQL: the changelog's NOTIFY wakes the listener (its poll runs only every 10 s);
    # SQLite: the listener polls the changelog every REALTIME_POLL_S.
    sql(library, "UPDATE books SET title = 'Realtime' WHERE book_no = 3")
    took = wait_for(lambda: title_of(export_dir, 3) == "Realtime", timeout=FAST)
    assert took < FAST
    # One run, finished just after the items were recorded.
    wait_for(lambda: [r["status"] for r in partial_runs(library)] == ["success"], timeout=FAST)


def test_notify_signals_a_change_the_triggers_cannot_see(
    library: Context, listening: Listener, export_dir: Path
) -> None:
    # A builder may read data no trigger watches (another database, a file, a cache): the
    # application then says what changed. Here: a table written with the triggers removed.
    name = changelog.trigger_name(library.registry.get("books"), "books", "update")
    with library.source.begin() as conn:
        on_table = ' ON "books"' if conn.dialect.name == "postgresql" else ""
        conn.execute(text(f'DROP TRIGGER "{name}"{on_table}'))
        conn.execute(text("UPDATE books SET title = 'Untracked' WHERE book_no = 5"))
        assert realtime.notify(library, "books", [5], conn=conn) == 1
    took = wait_for(lambda: title_of(export_dir, 5) == "Untracked", timeout=FAST)
    assert took < FAST


def test_notify_commits_or_rolls_back_with_the_application_transaction(library: Context) -> None:
    books = library.registry.get("books")
    with library.source.connect() as conn:
        before = changelog.current_version(conn, books)
    with pytest.raises(RuntimeError), library.source.begin() as conn:
        realtime.notify(library, books, [1, 2], conn=conn)
        raise RuntimeError("the application's transaction failed")
    with library.source.connect() as conn:
        assert changelog.current_version(conn, books) == before
    assert realtime.notify(library, books, ["2", 1, 2]) == 2
    with library.source.connect() as conn:
        assert changelog.backlog(conn, books, before) == 2


def test_notified_changes_are_synced_by_the_minute_job_when_no_listener_runs(
    library: Context, export_dir: Path
) -> None:
    sql(library, "UPDATE books SET title = 'While down' WHERE book_no = 2")
    realtime.notify(library, "books", [4])
    [outcome] = indexer.update_all_views(library)  # the safety net
    assert (outcome.counts.updated, outcome.counts.skipped) == (1, 1)
    assert title_of(export_dir, 2) == "While down"


def test_changes_made_while_the_listener_was_down_are_synced_when_it_starts(
    library: Context, export_dir: Path
) -> None:
    sql(library, "UPDATE books SET title = 'Before start' WHERE book_no = 1")
    listener = Listener(library, sync_in_process(library))
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: title_of(export_dir, 1) == "Before start", timeout=FAST + 3)
    finally:
        stop.set()
        thread.join(10)


def test_a_burst_of_changes_is_synced_in_a_few_runs_not_one_per_change(
    library: Context, listening: Listener, export_dir: Path
) -> None:
    for round_ in range(5):
        for book in range(1, 7):
            sql(library, f"UPDATE books SET title = 'Burst {round_}' WHERE book_no = {book}")
    wait_for(
        lambda: all(title_of(export_dir, b) == "Burst 4" for b in range(1, 7)), timeout=FAST + 3
    )
    assert 1 <= len(partial_runs(library)) <= 10  # 30 committed changes


def test_a_feed_held_by_another_process_is_synced_once_it_is_free(
    library: Context, listening: Listener, export_dir: Path
) -> None:
    lock = Lock(library.db, lock_name(library.registry.get("books")))
    assert lock.acquire()
    sql(library, "UPDATE books SET title = 'After the lock' WHERE book_no = 6")
    time.sleep(1.0)
    assert title_of(export_dir, 6) != "After the lock"
    lock.release()
    wait_for(lambda: title_of(export_dir, 6) == "After the lock", timeout=FAST)


def test_schedule_mode_indexers_are_left_to_the_minute_job(
    library: Context, listening: Listener, export_dir: Path
) -> None:
    indexer.set_mode(library, library.registry.get("books"), IndexerMode.SCHEDULE)
    sql(library, "UPDATE books SET title = 'Scheduled' WHERE book_no = 2")
    time.sleep(1.0)
    assert title_of(export_dir, 2) != "Scheduled"
    [outcome] = indexer.update_all_views(library)
    assert outcome.counts.updated == 1


def test_notify_refuses_ids_that_are_not_entity_keys(library: Context) -> None:
    with pytest.raises(errors.NotifyError) as error:
        realtime.notify(library, "books", [1, "book-2"])
    assert str(error.value) == (
        "'book-2' is not an entity id of feed 'books'; accepted: positive whole numbers "
        "(values of books.book_no) below 2^63."
    )
    with library.source.connect() as conn:
        table = changelog.changelog_table(library.registry.get("books"))
        assert conn.scalars(select(table.c.entity_id)).all() == []  # nothing half-recorded


def test_switching_modes_keeps_the_backlog(library: Context, export_dir: Path) -> None:
    books = library.registry.get("books")
    sql(library, "UPDATE books SET title = 'Pending' WHERE book_no = 4")
    indexer.set_mode(library, books, IndexerMode.SCHEDULE)
    with library.db.connect() as conn:
        pointer = get_state(conn, books.indexer_id).version_id
    with library.source.connect() as conn:
        assert changelog.backlog(conn, books, pointer) == 1
    indexer.update_all_views(library)
    assert title_of(export_dir, 4) == "Pending"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"schema": "public", "feed": "products"}', realtime.Signal("public", "products")),
        ('{"schema": "public"}', None),
        ("products", None),
        ("[1, 2]", None),
    ],
)
def test_signals_are_read_from_the_notify_payload(
    payload: str, expected: realtime.Signal | None
) -> None:
    assert realtime.parse_signal(payload) == expected


def test_indexer_notify_command_records_the_ids_and_says_who_syncs_them(
    library: Context,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from worker.cli import main

    settings = library.settings
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EXPORT_URL", settings.export_url)
    monkeypatch.setenv("FEEDSYNC_CONFIG", str(settings.config_path))
    books = library.registry.get("books")
    assert main(["indexer:notify", "--feed", "books", "--ids", "2,3, 3"]) == 0
    assert capsys.readouterr().out == (
        "Recorded 2 changed entities of feed books; the realtime listener syncs them now.\n"
    )
    with library.source.connect() as conn:
        assert changelog.backlog(conn, books, 0) == 2
    accepted = "accepted: positive whole numbers (values of books.book_no) below 2^63.\n"
    for bad in ("x", "-5", "0", "12345678901234567890123"):
        assert main(["indexer:notify", "--feed", "books", "--ids", f"2,{bad}"]) == 1
        out, err = capsys.readouterr()
        assert (out, err) == ("", f"'{bad}' is not an entity id of feed 'books'; {accepted}")
    with library.source.connect() as conn:
        assert changelog.backlog(conn, books, 0) == 2  # nothing more was recorded


def test_the_listener_survives_a_database_failure_and_catches_up(
    library: Context, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [RuntimeError("server closed the connection unexpectedly")]
    checked = realtime.pending

    def flaky(ctx: Context) -> list:
        if failures:
            raise failures.pop()
        return checked(ctx)

    monkeypatch.setattr(realtime, "pending", flaky)
    listener = Listener(library, sync_in_process(library))
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    worker_logs.configure("json", logging.INFO)  # as a worker logs (a CLI test may quieten it)
    with structlog.testing.capture_logs() as logs:
        thread.start()
        try:
            sql(library, "UPDATE books SET title = 'After the failure' WHERE book_no = 4")
            # The first check fails; the listener retries after 1 s and finds the change.
            wait_for(lambda: title_of(export_dir, 4) == "After the failure", timeout=FAST + 2)
            wait_for(lambda: any(e["event"] == "realtime.reconnected" for e in logs), timeout=1)
            assert not failures and thread.is_alive()
        finally:
            stop.set()
            thread.join(10)
    # The logs say that it failed, and that it works again.
    events = [
        e["event"]
        for e in logs
        if e["event"] in ("realtime.listener_failed", "realtime.reconnected")
    ]
    assert events == ["realtime.listener_failed", "realtime.reconnected"]
