"""The reconciliation the resilience scenarios end with: it must see what a destination lacks."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from feeds.definitions import ItemStatus
from feeds.pipeline import indexer
from feeds.state.tables import items, sync_errors
from tests.conftest import library_context
from worker.testing.converge import pending, settle
from worker.testing.destination_server import DestinationServer
from worker.testing.reconcile import reconcile


def test_a_destination_that_holds_a_fresh_build_reconciles(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    indexer.reindex(ctx, ctx.registry.get("books"))
    result = reconcile(ctx, destination.holdings, destination.duplicates)
    assert result.ok, result.problems()
    assert (result.feeds["books"].live, result.feeds["books"].matched) == (12, 12)
    ctx.close()


def test_what_the_destination_lacks_or_holds_stale_is_reported(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    indexer.reindex(ctx, ctx.registry.get("books"))
    with ctx.source.begin() as conn:
        conn.exec_driver_sql("UPDATE books SET title = 'Unsent' WHERE book_no = 2")
        conn.exec_driver_sql("DELETE FROM books WHERE book_no = 3")
    del destination.accepted["books"]["book-1"]
    result = reconcile(ctx, destination.holdings)
    books = result.feeds["books"]
    assert sorted(books.missing) == ["book-1", "book-2"]
    assert books.not_deleted == ["book-3"]
    assert not result.ok and len(result.problems()) == 2

    indexer.update_all_views(ctx)  # book 2 and the deletion of book 3 go; book 1 is still lost
    assert reconcile(ctx, destination.holdings).feeds["books"].missing == ["book-1"]
    ctx.close()


def test_settling_runs_the_jobs_until_nothing_is_pending_then_the_destination_reconciles(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    destination.fail_next(3)  # the first requests of the first full sync fail: retried later
    assert pending(ctx) == {"reindex books": 1}
    settled = settle(ctx)
    assert settled.converged and pending(ctx) == {}
    result = reconcile(ctx, destination.holdings, destination.duplicates)
    assert result.ok, result.problems()
    assert result.duplicates == 0
    ctx.close()


def test_a_retry_after_longer_than_a_run_waits_is_over_when_time_passes(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    destination.rate_limit_next(1, retry_after=600)  # past the most a sender sleeps in a run
    settled = settle(ctx)
    assert settled.converged and settled.rounds == 2 and settled.seconds < 30
    assert reconcile(ctx, destination.holdings).ok
    ctx.close()


def test_a_deletion_left_unsettled_and_a_rejection_without_its_category_are_reported(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    destination.reject({"book-2"}, code="MISSING_ASSOCIATION")
    indexer.reindex(ctx, ctx.registry.get("books"))
    with ctx.source.begin() as conn:
        conn.exec_driver_sql("DELETE FROM books WHERE book_no = 3")
    indexer.update_all_views(ctx)
    assert reconcile(ctx, destination.holdings).ok  # book-2 waits: rejected, with its error

    with ctx.db.begin() as conn:
        conn.execute(
            update(items).where(items.c.id == "book-3").values(status=int(ItemStatus.RETRYABLE))
        )
        conn.execute(
            update(sync_errors).where(sync_errors.c.item_id == "book-2").values(category="other")
        )
    books = reconcile(ctx, destination.holdings).feeds["books"]
    assert (books.stuck, books.unrecorded) == (["book-3"], ["book-2"])
    ctx.close()
