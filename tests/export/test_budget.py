"""The API-call budget (SPEC §6): calls counted across the fleet in a rolling 24-hour window, sending
paused when the allocation is used up and resumed when the window frees — against the real test
destination, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from config.context import open_context
from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import ItemStatus
from feeds.export import budget
from feeds.export.budget import CallBudget, call_cap, resume_time, usage, window_start
from feeds.history import read_model
from feeds.pipeline import exporter, indexer
from feeds.pipeline.resync import ResyncRequest, resync
from feeds.state.tables import items
from tests.conftest import as_dicts, library_context, make_settings
from worker.testing.destination_server import DestinationServer

BOOKS = 12  # library_context: batch size 3 → 4 calls for a full sync


def statuses(ctx: Context) -> dict[str, dict]:
    with ctx.db.connect() as conn:
        return {
            r["id"]: dict(r)
            for r in conn.execute(select(items).where(items.c.feed == "books")).mappings()
        }


def all_runs(ctx: Context) -> list[dict]:
    with ctx.db.connect() as conn:
        return as_dicts(read_model.list_runs(conn, feed="books"))


def book_ids(*numbers: int) -> set[str]:
    return {f"book-{n}" for n in numbers}


@pytest.fixture
def limited(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    """The library feed sending to the test destination with an allocation of 3 calls a day."""
    ctx = library_context(db_url, destination.url, tmp_path, EXPORT_DAILY_CALL_ALLOCATION="3")
    yield ctx
    ctx.close()


def a_day_ago() -> datetime:
    return utcnow() - timedelta(days=1, minutes=2)


# --- counting ----------------------------------------------------------------------------------


def test_calls_are_counted_for_every_worker_sharing_the_database(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    first = library_context(db_url, destination.url, tmp_path)
    second = open_context(first.settings)  # another worker on the same worker database
    try:
        indexer.reindex(first, first.registry.get("books"))
        resync(second, second.registry.get("books"), ResyncRequest())
        assert len(destination.requests) == 8
        for ctx in (first, second):
            seen = usage(ctx)
            assert (seen.counted, seen.calls_24h, seen.allocation, seen.remaining) == (
                True,
                8,
                None,
                None,
            )
    finally:
        second.close()
        first.close()


def test_two_workers_together_never_take_more_than_the_allocation(
    db_url: str, export_dir: Path
) -> None:
    contexts = [open_context(make_settings(db_url, export_dir)) for _ in range(2)]
    granted: list[bool] = []
    lock = threading.Lock()

    def worker(ctx: Context) -> None:
        gate = CallBudget(ctx.db, "http://dest.example", allocation=10)
        for _ in range(15):
            ok = gate.acquire() is None
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker, args=(ctx,)) for ctx in contexts for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (granted.count(True), granted.count(False)) == (10, 50)
        assert usage(contexts[0], "http://dest.example").calls_24h == 10
    finally:
        for ctx in contexts:
            ctx.close()


def test_every_request_counts_split_batches_and_retries_included(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    try:
        destination.fail_next(1)  # the first batch fails (1 call), the resend job retries it
        destination.too_large_over(2)  # the other three: a 413, then two halves (3 calls each)
        indexer.reindex(ctx, ctx.registry.get("books"))
        destination.too_large_over(None)
        time.sleep(0.12)  # past the test backoff
        exporter.resend_failed(ctx, ctx.registry.get("books"))  # 1 call
        assert len(destination.requests) == 1 + 3 * 3 + 1
        assert usage(ctx).calls_24h == len(destination.requests)
    finally:
        ctx.close()


def test_writes_to_a_file_destination_are_not_api_calls(
    db_url: str, export_dir: Path, tmp_path: Path
) -> None:
    ctx = library_context(
        db_url, f"file://{export_dir}", tmp_path, EXPORT_DAILY_CALL_ALLOCATION="1"
    )
    try:
        indexer.reindex(ctx, ctx.registry.get("books"))
        assert len((export_dir / "books.jsonl").read_text().splitlines()) == BOOKS
        seen = usage(ctx)
        assert (seen.counted, seen.calls_24h, seen.remaining) == (False, 0, None)
        assert all_runs(ctx)[0]["status"] == "success"
    finally:
        ctx.close()


# --- the destination's limit -------------------------------------------------------------------


def test_the_destination_daily_limit_is_read_from_its_header_and_shared(
    db_url: str, tmp_path: Path
) -> None:
    with DestinationServer(daily_limit=5000) as server:
        ctx = library_context(db_url, server.url, tmp_path, EXPORT_DAILY_CALL_LIMIT="100")
        other = open_context(ctx.settings)
        try:
            assert usage(ctx).destination_limit == 100  # configured, until the destination says
            indexer.reindex(ctx, ctx.registry.get("books"))
            assert usage(other).destination_limit == 5000
            server.daily_limit = 4000  # the latest answer wins
            resync(other, other.registry.get("books"), ResyncRequest(by_ids=("book-1",)))
            assert usage(ctx).destination_limit == 4000
        finally:
            other.close()
            ctx.close()


def test_a_lower_destination_limit_caps_the_allocation(db_url: str, tmp_path: Path) -> None:
    with DestinationServer(daily_limit=2) as server:
        ctx = library_context(db_url, server.url, tmp_path, EXPORT_DAILY_CALL_ALLOCATION="10")
        try:
            indexer.reindex(ctx, ctx.registry.get("books"))
            seen = usage(ctx)
            assert (seen.allocation, seen.destination_limit, seen.cap, seen.remaining) == (
                10,
                2,
                2,
                0,
            )
            assert len(server.requests) == 2
            assert "(2 of 2 calls in 24 h)" in all_runs(ctx)[0]["message"]
        finally:
            ctx.close()


# --- pause and resume --------------------------------------------------------------------------


def test_sending_pauses_when_the_allocation_is_used_up(
    limited: Context, destination: DestinationServer
) -> None:
    with capture_logs() as logs:
        indexer.reindex(limited, limited.registry.get("books"))
    assert len(destination.requests) == 3  # the fourth call is never made
    assert destination.accepted_ids("books") == book_ids(*range(1, 10))
    [run] = all_runs(limited)
    assert (run["status"], run["rows_synced"], run["failed"]) == ("partial", 9, 0)
    assert "API-call budget used up (3 of 3 calls in 24 h): 3 items not sent" in run["message"]
    rows = statuses(limited)
    waiting = {i for i, r in rows.items() if r["status"] == ItemStatus.SKIPPED}
    assert waiting == book_ids(10, 11, 12)
    assert all(
        rows[i]["attempts"] == 0
        and rows[i]["next_attempt_at"] is not None
        and rows[i]["error_code"] == "BUDGET_EXHAUSTED"
        and rows[i]["error_category"] is None
        for i in waiting
    )
    with limited.db.connect() as conn:
        assert as_dicts(read_model.list_errors(conn, feed="books")) == []  # held back, not failed
    seen = usage(limited)
    assert (seen.calls_24h, seen.cap, seen.remaining, seen.paused) == (3, 3, 0, True)
    events = [e["event"] for e in logs]
    assert "budget.exhausted" in events and "run.paused" in events


def test_the_job_line_says_what_waits_for_the_budget(limited: Context) -> None:
    from worker.jobs import run_job

    [line] = run_job(limited, "indexer_reindex_all_invalid")
    assert "books: new 12, updated 0, deleted 0, skipped 0, failed 0, synced 9" in line
    assert "waiting for the API-call budget 3" in line
    # The waiting items are due when the window frees (tomorrow), not before.
    assert run_job(limited, "books_feed_resend_failed_items") == [
        "books: no failed item due for a resend"
    ]


def test_sending_resumes_by_itself_when_the_window_frees(
    limited: Context, destination: DestinationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = limited.registry.get("books")
    monkeypatch.setattr(budget, "clock", a_day_ago)  # these calls were made a day ago
    indexer.reindex(limited, feed)
    assert len(destination.requests) == 3

    # Still a day ago: the window is full, the resend job does nothing and records no run.
    outcome = exporter.resend_failed(limited, feed)
    assert outcome is not None and "API-call budget is used up" in str(outcome.skipped_reason)
    assert len(destination.requests) == 3 and len(all_runs(limited)) == 1

    # Now: the day-old calls left the window.
    monkeypatch.setattr(budget, "clock", utcnow)
    assert usage(limited).remaining == 3
    outcome = exporter.resend_failed(limited, feed)
    assert outcome is not None and outcome.skipped_reason is None
    assert destination.accepted_ids("books") == book_ids(*range(1, BOOKS + 1))
    assert {r["status"] for r in statuses(limited).values()} == {ItemStatus.SENT}
    assert all_runs(limited)[0]["status"] == "success"
    assert usage(limited).calls_24h == 1


def test_a_paused_legacy_export_leaves_the_rest_unsent_for_a_later_run(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(
        db_url,
        destination.url,
        tmp_path,
        extra='export_mode = "legacy"\n',
        EXPORT_DAILY_CALL_ALLOCATION="1",
    )
    try:
        feed = ctx.registry.get("books")
        indexer.reindex(ctx, feed)  # legacy: collected, nothing sent
        exporter.export_pending(ctx, feed)
        order = sorted(book_ids(*range(1, BOOKS + 1)))  # the exporter pages by item id
        assert destination.accepted_ids("books") == set(order[:3])  # one call: one batch
        rows = statuses(ctx)
        assert {i for i, r in rows.items() if r["status"] == ItemStatus.SKIPPED} == set(order[3:6])
        assert {i for i, r in rows.items() if r["status"] is None} == set(order[6:])
        assert all(r["payload"] is not None for r in rows.values() if r["status"] != 200)
        assert all_runs(ctx)[0]["status"] == "partial"
        skipped = exporter.export_pending(ctx, feed)  # still used up: no run, nothing sent
        assert skipped is not None and skipped.skipped_reason is not None
        assert len(destination.requests) == 1
    finally:
        ctx.close()


# --- pure rules --------------------------------------------------------------------------------


def test_the_window_is_the_last_1440_minutes() -> None:
    now = datetime(2026, 11, 23, 10, 30, 45)
    assert window_start(now) == datetime(2026, 11, 22, 10, 31)


def test_the_cap_is_the_allocation_at_most_the_destination_limit() -> None:
    assert call_cap(None, 5000) is None
    assert call_cap(1000, None) == 1000
    assert call_cap(1000, 5000) == 1000
    assert call_cap(1000, 400) == 400


def test_sending_resumes_when_enough_old_calls_leave_the_window() -> None:
    t = datetime(2026, 11, 23, 10, 0)
    counted = [(t, 4), (t + timedelta(minutes=5), 3), (t + timedelta(minutes=9), 3)]
    assert resume_time(counted, cap=10) == t + timedelta(days=1)
    # The cap was lowered below the usage: two buckets must leave first.
    assert resume_time(counted, cap=4) == t + timedelta(days=1, minutes=5)
    assert resume_time(counted, cap=11) is None
