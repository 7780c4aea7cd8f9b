"""Resync of selected sync errors (`feeds.resync.resync_errors`) and of every error of a category
(`resync_category`, 100 per run), against the real test destination."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feeds.context import Context
from feeds.errors import FeedsyncError, LockedError
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.pipeline.resync_errors import MAX_RESYNC_ERRORS, resync_category, resync_errors
from feeds.pipeline.run import lock_name
from feeds.state.locks import Lock
from tests.conftest import as_dicts, library_context
from worker.testing.destination_server import DestinationServer


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


def current_errors(ctx: Context) -> dict[str, dict]:
    with ctx.db.connect() as conn:
        return {e["item_id"]: e for e in as_dicts(read_model.list_errors(conn, feed="books"))}


def test_resync_of_selected_errors_resends_them_and_clears_them(
    lib: Context, destination: DestinationServer
) -> None:
    destination.reject(["book-3", "book-5", "book-7"], code="INVALID_VALUE")
    indexer.reindex(lib, lib.registry.get("books"))
    errors = current_errors(lib)
    assert set(errors) == {"book-3", "book-5", "book-7"}
    destination.clear_faults()
    destination.reset()

    outcome = resync_errors(lib, [errors["book-3"]["id"], errors["book-5"]["id"]])

    assert destination.accepted_ids("books") == {"book-3", "book-5"}
    assert sorted(outcome.resolved) == sorted([errors["book-3"]["id"], errors["book-5"]["id"]])
    assert outcome.still_failing == []
    assert set(current_errors(lib)) == {"book-7"}
    with lib.db.connect() as conn:
        run = as_dicts(read_model.get_run(conn, outcome.run_ids[0]))
    assert run is not None
    assert (run["operation"], run["status"], run["rows_synced"]) == ("resync_errors", "success", 2)


def test_an_error_that_fails_again_stays_current_with_a_new_row(
    lib: Context, destination: DestinationServer
) -> None:
    destination.reject(["book-2", "book-4"], code="INVALID_VALUE")
    indexer.reindex(lib, lib.registry.get("books"))
    before = current_errors(lib)
    destination.clear_faults()
    destination.reject(["book-4"], code="MISSING_ASSOCIATION")

    outcome = resync_errors(lib, [before["book-2"]["id"], before["book-4"]["id"]])

    assert outcome.resolved == [before["book-2"]["id"]]
    assert outcome.still_failing == [before["book-4"]["id"]]
    after = current_errors(lib)
    assert set(after) == {"book-4"}
    assert after["book-4"]["category"] == "associations"
    assert after["book-4"]["attempts"] == 2


def test_more_than_100_errors_are_refused_before_any_work(lib: Context) -> None:
    with pytest.raises(FeedsyncError, match="At most 100 sync errors can be resynced per request"):
        resync_errors(lib, list(range(1, MAX_RESYNC_ERRORS + 2)))


def test_unknown_error_ids_are_named(lib: Context) -> None:
    with pytest.raises(FeedsyncError, match="no sync errors with these ids: 41, 42"):
        resync_errors(lib, [41, 42])


def test_a_locked_feed_is_reported_not_waited_for_forever(
    lib: Context, destination: DestinationServer
) -> None:
    destination.reject(["book-1"])
    indexer.reindex(lib, lib.registry.get("books"))
    error_id = current_errors(lib)["book-1"]["id"]
    holder = Lock(lib.db, lock_name(lib.registry.get("books")))
    assert holder.acquire()
    try:
        with pytest.raises(LockedError, match="being synced by another process"):
            resync_errors(lib, [error_id], lock_wait_s=0.3)
    finally:
        holder.release()
    assert set(current_errors(lib)) == {"book-1"}


def test_ids_beyond_the_column_range_are_unknown_not_a_crash(lib: Context) -> None:
    with pytest.raises(FeedsyncError, match="no sync errors with these ids"):
        resync_errors(lib, [2**64, -1])


def test_resync_of_a_whole_category_goes_in_runs_of_100_and_leaves_other_categories(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(
        db_url, destination.url, tmp_path, books=230, batch_size=100, collect_batch_size=100
    )
    try:
        books = ctx.registry.get("books")
        associations = [f"book-{n}" for n in range(1, 211)]  # 210 errors: three runs
        destination.reject(associations, code="MISSING_ASSOCIATION")
        destination.reject(["book-220"], code="INVALID_VALUE")
        indexer.reindex(ctx, books)
        destination.clear_faults()
        destination.reset()
        outcome = resync_category(ctx, books, "associations")
        assert len(outcome.run_ids) == 3 and len(outcome.resolved) == 210
        assert outcome.still_failing == []
        assert destination.accepted_ids("books") == set(associations)
        with ctx.db.connect() as conn:
            runs = read_model.runs_by_ids(conn, outcome.run_ids)
            assert sorted(r.rows_synced for r in runs) == [10, 100, 100]
            assert {r.operation for r in runs} == {"resync_errors"}
            left = read_model.list_errors(conn, feed="books")
        assert [(e.item_id, e.category) for e in left] == [("book-220", "property_values")]
        with pytest.raises(FeedsyncError, match="books has no current associations errors"):
            resync_category(ctx, books, "associations")
    finally:
        ctx.close()
