"""Export to a real HTTP destination (protocol v1): every answer of the table, item status, retries,
legacy mode, resync — against the test server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import ItemStatus
from feeds.errors import FeedsyncError, LockedError
from feeds.export import http
from feeds.history import read_model, runs
from feeds.pipeline import exporter, indexer
from feeds.pipeline.resync import ResyncRequest, resync
from feeds.pipeline.resync_errors import resync_errors
from feeds.pipeline.run import lock_name
from feeds.state.locks import Lock
from feeds.state.tables import items, sent_hash_of
from tests.conftest import as_dicts, library_context
from worker.testing.destination_server import DestinationServer

BOOKS = 12


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


# The feed table as people read it: the sent hash as stored, or implied by status 200.
SHOWN = [sent_hash_of() if c.name == "sent_hash" else c for c in items.columns]


def rows(ctx: Context) -> dict[str, dict]:
    with ctx.db.connect() as conn:
        return {
            r["id"]: dict(r)
            for r in conn.execute(select(*SHOWN).where(items.c.feed == "books")).mappings()
        }


def last_run(ctx: Context) -> dict:
    with ctx.db.connect() as conn:
        return as_dicts(read_model.list_runs(conn, feed="books", limit=1))[0]


def errors(ctx: Context) -> list[dict]:
    with ctx.db.connect() as conn:
        return as_dicts(read_model.list_errors(conn, feed="books"))


def make_due(ctx: Context) -> None:
    time.sleep(0.12)  # past backoff_max_s


def resend_until_quiet(ctx: Context, rounds: int = 10) -> None:
    feed = ctx.registry.get("books")
    for _ in range(rounds):
        make_due(ctx)
        if exporter.resend_failed(ctx, feed) is None:
            return


def ids(*numbers: int) -> set[str]:
    return {f"book-{n}" for n in numbers}


ALL = ids(*range(1, BOOKS + 1))


def test_accepted_items_are_recorded_sent_with_the_hash_accepted(
    lib: Context, destination: DestinationServer
) -> None:
    outcome = indexer.reindex(lib, lib.registry.get("books"))
    assert destination.accepted_ids("books") == ALL
    stored = rows(lib)
    assert all(
        r["status"] == ItemStatus.SENT and r["sent_hash"] == r["hash"] and r["payload"] is None
        for r in stored.values()
    )
    run = last_run(lib)
    assert (run["status"], run["new"], run["rows_synced"], run["failed"]) == (
        "success",
        BOOKS,
        BOOKS,
        0,
    )
    assert outcome.run_id == run["id"]


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("MISSING_ASSOCIATION", "associations"),
        ("TYPE_MISMATCH", "property_mappings"),
        ("SOMETHING_NEW", "other"),
    ],
)
def test_rejected_item_is_failed_not_retryable_with_the_category_of_its_code(
    lib: Context, destination: DestinationServer, code: str, category: str
) -> None:
    destination.reject({"book-2"}, code=code, message="nope")
    indexer.reindex(lib, lib.registry.get("books"))
    row = rows(lib)["book-2"]
    assert (row["status"], row["error_code"], row["error_category"], row["next_attempt_at"]) == (
        400,
        code,
        category,
        None,
    )
    [error] = errors(lib)
    assert (error["item_id"], error["category"], error["code"], error["message"]) == (
        "book-2",
        category,
        code,
        "nope",
    )
    assert last_run(lib)["status"] == "partial"
    assert exporter.resend_failed(lib, lib.registry.get("books")) is None


def test_item_missing_from_results_is_retried_and_delivered(
    lib: Context, destination: DestinationServer
) -> None:
    destination.omit({"book-5"})
    indexer.reindex(lib, lib.registry.get("books"))
    row = rows(lib)["book-5"]
    assert (row["status"], row["attempts"]) == (ItemStatus.RETRYABLE, 1) and row[
        "next_attempt_at"
    ] is not None
    assert errors(lib)[0]["category"] == "transient"
    destination.clear_faults()
    resend_until_quiet(lib)
    assert rows(lib)["book-5"]["status"] == ItemStatus.SENT
    assert destination.accepted_ids("books") == ALL
    assert errors(lib) == []  # resolved once sent


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_makes_the_whole_batch_retryable(
    lib: Context, destination: DestinationServer, status: int
) -> None:
    destination.fail_next(1, status=status)
    indexer.reindex(lib, lib.registry.get("books"))
    failed = {i for i, r in rows(lib).items() if r["status"] == ItemStatus.RETRYABLE}
    assert len(failed) == 3 and all(rows(lib)[i]["error_code"] == f"HTTP_{status}" for i in failed)
    assert last_run(lib)["status"] == "partial"
    resend_until_quiet(lib)
    assert destination.accepted_ids("books") == ALL
    assert last_run(lib)["operation"] == "resend_failed"


def test_every_new_attempt_gets_a_new_idempotency_key(
    lib: Context, destination: DestinationServer
) -> None:
    destination.fail_next(1, status=503)
    indexer.reindex(lib, lib.registry.get("books"))
    resend_until_quiet(lib)
    first, resend = destination.requests[0], destination.requests[-1]
    assert set(first.ids) == set(resend.ids) and first.idempotency_key != resend.idempotency_key
    assert len({r.idempotency_key for r in destination.requests}) == len(destination.requests)
    assert not any(r.replayed for r in destination.requests)


def resync_rejected_item(ctx: Context, how: str, item_id: str) -> None:
    """Resync one item as an operator would: `saas:resync --by-ids`, or "Resync selected" errors."""
    if how == "by_ids":
        resync(ctx, ctx.registry.get("books"), ResyncRequest(by_ids=(item_id,)))
    else:
        resync_errors(ctx, [e["id"] for e in errors(ctx) if e["item_id"] == item_id])


@pytest.mark.parametrize("how", ["by_ids", "selected_errors"])
def test_resync_after_the_destination_is_fixed_is_accepted(
    lib: Context, destination: DestinationServer, how: str
) -> None:
    destination.reject({"book-2"}, code="MISSING_ASSOCIATION")
    indexer.reindex(lib, lib.registry.get("books"))
    resync_rejected_item(lib, how, "book-2")  # before the fix: rejected again
    assert rows(lib)["book-2"]["status"] == ItemStatus.REJECTED
    destination.clear_faults()  # the cause is fixed on the destination
    resync_rejected_item(lib, how, "book-2")
    assert rows(lib)["book-2"]["status"] == ItemStatus.SENT
    assert "book-2" in destination.accepted_ids("books")
    assert [e["item_id"] for e in errors(lib)] == []
    assert not any(r.replayed for r in destination.requests)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_client_error_rejects_the_batch_and_records_the_body(
    lib: Context, destination: DestinationServer, status: int
) -> None:
    destination.fail_next(1, status=status)
    indexer.reindex(lib, lib.registry.get("books"))
    rejected = [r for r in rows(lib).values() if r["status"] == ItemStatus.REJECTED]
    assert len(rejected) == 3
    assert all(
        r["error_code"] == f"HTTP_{status}"
        and r["error_message"]
        and r["error_category"] == "other"
        for r in rejected
    )
    assert exporter.resend_failed(lib, lib.registry.get("books")) is None


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused_stop_the_run_with_config_error(
    lib: Context, destination: DestinationServer, status: int
) -> None:
    destination.fail_next(1, status=status)
    indexer.reindex(lib, lib.registry.get("books"))
    assert len(destination.requests) == 1  # nothing more was sent in this run
    run = last_run(lib)
    assert run["status"] == "config_error" and str(status) in run["message"]
    assert {r["status"] for r in rows(lib).values()} == {ItemStatus.RETRYABLE}
    resend_until_quiet(lib)
    assert destination.accepted_ids("books") == ALL


def test_rate_limit_waits_for_retry_after_before_the_next_batch(
    lib: Context, destination: DestinationServer
) -> None:
    destination.rate_limit_next(1, retry_after=0.4)
    indexer.reindex(lib, lib.registry.get("books"))
    first, second = destination.requests[0], destination.requests[1]
    assert first.status == 429 and second.time - first.time >= 0.4
    assert rows(lib)[first.ids[0]]["status"] == ItemStatus.RETRYABLE
    resend_until_quiet(lib)
    assert destination.accepted_ids("books") == ALL


def test_a_pause_longer_than_a_run_waits_holds_its_batches_until_retry_after(
    lib: Context, destination: DestinationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "MAX_RETRY_AFTER_WAIT_S", 0.2)
    destination.rate_limit_next(1, retry_after=30, http_date=True)
    indexer.reindex(lib, lib.registry.get("books"))
    assert [r.status for r in destination.requests] == [429]  # nothing more during the pause
    stored = rows(lib).values()
    assert {r["status"] for r in stored} == {ItemStatus.RETRYABLE}
    assert all(r["next_attempt_at"] >= utcnow() + timedelta(seconds=25) for r in stored)
    assert exporter.resend_failed(lib, lib.registry.get("books")) is None  # not due yet


def test_too_large_batch_is_split_and_delivered(
    lib: Context, destination: DestinationServer
) -> None:
    destination.too_large_over(1)
    indexer.reindex(lib, lib.registry.get("books"))
    assert destination.accepted_ids("books") == ALL
    assert all(r["status"] == ItemStatus.SENT for r in rows(lib).values())
    assert {r.status for r in destination.requests} == {200, 413}


def test_an_answer_whose_body_cannot_be_decoded_is_retryable_and_the_run_goes_on(
    lib: Context, destination: DestinationServer
) -> None:
    # A 200 claiming a gzip body that is not gzip: httpx cannot decode it (DecodingError).
    destination.garble_next(1, b"not gzip", headers={"Content-Encoding": "gzip"})
    outcome = indexer.reindex(lib, lib.registry.get("books"))
    assert (outcome.status, outcome.counts.rows_synced, outcome.counts.failed) == ("partial", 9, 3)
    failed = [r for r in rows(lib).values() if r["status"] == ItemStatus.RETRYABLE]
    assert len(failed) == 3 and {r["error_code"] for r in failed} == {"BAD_RESPONSE"}
    resend_until_quiet(lib)
    assert destination.accepted_ids("books") == ALL


def test_timeout_is_retryable(db_url: str, destination: DestinationServer, tmp_path: Path) -> None:
    ctx = library_context(db_url, destination.url, tmp_path, EXPORT_TIMEOUT_S="0.3")
    destination.slow_next(1, 1.0)
    indexer.reindex(ctx, ctx.registry.get("books"))
    timed_out = [r for r in rows(ctx).values() if r["error_code"] == "TRANSPORT"]
    assert len(timed_out) == 3 and all(r["status"] == ItemStatus.RETRYABLE for r in timed_out)
    resend_until_quiet(ctx)
    assert destination.accepted_ids("books") == ALL
    ctx.close()


def test_connection_refused_loses_nothing(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, "http://127.0.0.1:9", tmp_path)  # nothing listens on port 9
    indexer.reindex(ctx, ctx.registry.get("books"))
    assert last_run(ctx)["status"] == "error"
    assert {r["status"] for r in rows(ctx).values()} == {ItemStatus.RETRYABLE}
    ctx.close()


def test_bearer_token_and_gzip_are_sent(db_url: str, tmp_path: Path) -> None:
    with DestinationServer(token="s3cret") as server:
        ctx = library_context(db_url, server.url, tmp_path, batch_size=6, EXPORT_TOKEN="s3cret")
        with ctx.source.begin() as conn:
            conn.execute(text("UPDATE books SET title = title || '" + "long title " * 15 + "'"))
        indexer.reindex(ctx, ctx.registry.get("books"))
        assert server.accepted_ids("books") == ALL
        assert all(r.authorization == "Bearer s3cret" and r.gzip for r in server.requests)
        ctx.close()


def test_nothing_is_lost_when_the_destination_fails_often(db_url: str, tmp_path: Path) -> None:
    with DestinationServer() as server:
        ctx = library_context(db_url, server.url, tmp_path, batch_size=2)
        server.fail_ratio(0.4, seed=11)
        indexer.reindex(ctx, ctx.registry.get("books"))
        with ctx.source.begin() as conn:
            conn.execute(text("UPDATE books SET title = 'v2' WHERE book_no <= 6"))
            conn.execute(text("DELETE FROM books WHERE book_no = 12"))
        indexer.update_all_views(ctx)
        resend_until_quiet(ctx, rounds=30)
        assert server.accepted_ids("books") == ALL
        assert server.accepted["books"]["book-12"]["deleted"] is True
        assert all(
            server.accepted["books"][f"book-{n}"]["data"]["title"] == "v2" for n in range(1, 7)
        )
        ctx.close()


def test_partial_sync_sends_only_what_changed(lib: Context, destination: DestinationServer) -> None:
    indexer.reindex(lib, lib.registry.get("books"))
    destination.reset()
    with lib.source.begin() as conn:
        conn.execute(text("UPDATE books SET title = title WHERE book_no = 1"))  # no change
        conn.execute(text("UPDATE books SET title = 'Changed' WHERE book_no = 2"))
    [outcome] = indexer.update_all_views(lib)
    assert [i for r in destination.requests for i in r.ids] == ["book-2"]
    assert (outcome.counts.updated, outcome.counts.skipped) == (1, 0)
    assert indexer.update_all_views(lib) == []
    assert destination.requests[-1].ids == ("book-2",)


def test_legacy_mode_stores_payloads_and_sends_only_through_its_job(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path, extra='export_mode = "legacy"\n')
    indexer.reindex(ctx, ctx.registry.get("books"))
    assert destination.requests == []
    assert len(rows(ctx)) == BOOKS
    assert all(r["status"] is None and r["payload"] for r in rows(ctx).values())
    outcome = exporter.export_pending(ctx, ctx.registry.get("books"))
    assert outcome is not None and outcome.counts.rows_synced == BOOKS
    assert destination.accepted_ids("books") == ALL
    assert last_run(ctx)["operation"] == "legacy_export"
    assert exporter.export_pending(ctx, ctx.registry.get("books")) is None
    ctx.close()


class Killed(BaseException):
    """The process died (kill -9): nothing after this point runs."""


def test_a_legacy_export_killed_mid_page_has_recorded_the_rounds_already_accepted(
    db_url: str, destination: DestinationServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of the feed table (collect_batch_size 6) is two rounds (batch_size 3): a process
    killed while the second is in flight resends that round only, as a collection run does."""
    ctx = library_context(db_url, destination.url, tmp_path, extra='export_mode = "legacy"\n')
    indexer.reindex(ctx, ctx.registry.get("books"))
    send = http.HttpDestination.send
    calls: list[int] = []

    def dies_on_the_second_request(self: http.HttpDestination, *args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return send(self, *args, **kw)

    monkeypatch.setattr(http.HttpDestination, "send", dies_on_the_second_request)
    with pytest.raises(Killed):
        exporter.export_pending(ctx, ctx.registry.get("books"))
    sent = {i for i, r in rows(ctx).items() if r["status"] == ItemStatus.SENT}
    assert sent == destination.accepted_ids("books") == {"book-1", "book-10", "book-11"}
    ctx.close()


def test_dry_run_changes_nothing_anywhere(lib: Context, destination: DestinationServer) -> None:
    indexer.reindex(lib, lib.registry.get("books"))
    with lib.source.begin() as conn:
        conn.execute(text("UPDATE books SET title = 'Changed' WHERE book_no = 3"))
        conn.execute(text("DELETE FROM books WHERE book_no = 4"))
    before = (rows(lib), [r["id"] for r in runs_all(lib)], len(destination.requests))
    outcome = resync(lib, lib.registry.get("books"), ResyncRequest(dry_run=True))
    assert (outcome.counts.updated, outcome.counts.deleted, outcome.counts.skipped) == (
        1,
        1,
        BOOKS - 2,
    )
    assert (rows(lib), [r["id"] for r in runs_all(lib)], len(destination.requests)) == before


def runs_all(ctx: Context) -> list[dict]:
    with ctx.db.connect() as conn:
        return as_dicts(read_model.list_runs(conn, limit=1000))


def test_resync_resends_unchanged_items(lib: Context, destination: DestinationServer) -> None:
    indexer.reindex(lib, lib.registry.get("books"))
    outcome = resync(lib, lib.registry.get("books"), ResyncRequest(threads=2, batch_size=2))
    assert outcome.counts.rows_synced == BOOKS
    assert destination.count("books") == 2 * BOOKS


def test_resync_by_ids_sends_only_those(lib: Context, destination: DestinationServer) -> None:
    indexer.reindex(lib, lib.registry.get("books"))
    destination.reset()
    resync(lib, lib.registry.get("books"), ResyncRequest(by_ids=("book-3", "book-7")))
    assert sorted(i for r in destination.requests for i in r.ids) == ["book-3", "book-7"]


def test_interrupted_resync_continues_without_resending_accepted_items(
    lib: Context, destination: DestinationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feeds.pipeline import resync as resync_module

    def crash_after_first_batch(ctx, feed, batch):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # Ctrl-C once the 1st batch was committed, before its checkpoint

    monkeypatch.setattr(resync_module, "_save_checkpoint", crash_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        resync(lib, lib.registry.get("books"), ResyncRequest())
    assert destination.accepted_ids("books") == ids(*range(1, 7))  # the first batch of 6
    monkeypatch.undo()
    resync(lib, lib.registry.get("books"), ResyncRequest(continue_resync=True))
    assert destination.accepted_ids("books") == ALL
    assert destination.count("books") == BOOKS  # every item accepted exactly once
    with pytest.raises(
        FeedsyncError, match="There is no interrupted resync of feed 'books' to continue"
    ):
        resync(lib, lib.registry.get("books"), ResyncRequest(continue_resync=True))


def test_no_reindex_needs_a_legacy_feed(lib: Context) -> None:
    with pytest.raises(
        FeedsyncError, match="--no-reindex resends the payloads kept in the feed table"
    ):
        resync(lib, lib.registry.get("books"), ResyncRequest(no_reindex=True))


def test_max_attempts_leaves_the_item_failed_until_it_changes(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path)
    destination.omit({"book-1"})
    indexer.reindex(ctx, ctx.registry.get("books"))
    resend_until_quiet(ctx, rounds=8)
    row = rows(ctx)["book-1"]
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == (
        ItemStatus.RETRYABLE,
        5,
        None,
    )
    destination.clear_faults()
    with ctx.source.begin() as conn:
        conn.execute(text("UPDATE books SET title = 'fixed' WHERE book_no = 1"))
    indexer.update_all_views(ctx)
    assert rows(ctx)["book-1"]["status"] == ItemStatus.SENT
    ctx.close()


def test_cleanup_feed_empties_the_feed_table_then_sends_everything_as_new(
    lib: Context, destination: DestinationServer
) -> None:
    indexer.reindex(lib, lib.registry.get("books"))
    with lib.db.begin() as conn:  # an item the source no longer has, left in the feed table
        conn.execute(text("UPDATE feed_items SET id = 'book-stale' WHERE id = 'book-1'"))
    outcome = resync(lib, lib.registry.get("books"), ResyncRequest(cleanup_feed=True))
    assert (outcome.counts.new, outcome.counts.deleted, outcome.counts.rows_synced) == (
        BOOKS,
        0,
        BOOKS,
    )
    assert set(rows(lib)) == ALL


def test_cleanup_feed_refused_as_locked_leaves_the_feed_table_as_it_was(lib: Context) -> None:
    books = lib.registry.get("books")
    indexer.reindex(lib, books)
    before = rows(lib)
    other = Lock(lib.db, lock_name(books))  # a partial sync of another process
    assert other.acquire()
    with pytest.raises(LockedError):
        resync(lib, books, ResyncRequest(cleanup_feed=True))
    other.release()
    assert rows(lib) == before


def test_no_reindex_resends_the_stored_payloads_of_a_legacy_feed(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path, extra='export_mode = "legacy"\n')
    indexer.reindex(ctx, ctx.registry.get("books"))
    exporter.export_pending(ctx, ctx.registry.get("books"))
    with ctx.source.begin() as conn:  # not rebuilt: the stored payload is what goes
        conn.execute(text("UPDATE books SET title = 'not collected yet'"))
    destination.reset()
    outcome = resync(ctx, ctx.registry.get("books"), ResyncRequest(no_reindex=True))
    assert outcome.counts.rows_synced == BOOKS
    assert destination.accepted_ids("books") == ALL
    assert {item["data"]["title"] for item in destination.accepted["books"].values()} == {
        f"Book {n}" for n in range(1, BOOKS + 1)
    }
    ctx.close()


def test_history_cleanup_drops_old_runs_and_resolved_errors_only(
    lib: Context, destination: DestinationServer
) -> None:
    destination.omit({"book-1"})
    destination.reject({"book-2"})
    indexer.reindex(lib, lib.registry.get("books"))
    destination.clear_faults()
    resend_until_quiet(lib)  # book-1's error is now resolved; book-2's rejection is still current
    assert runs.remove_history(lib.db, retention_days=5) == (0, 0)
    later = utcnow() + timedelta(days=6)
    removed_runs, removed_errors = runs.remove_history(lib.db, retention_days=5, now=later)
    assert removed_runs >= 2 and runs_all(lib) == []
    assert removed_errors == 1
    assert [e["item_id"] for e in errors(lib)] == ["book-2"]
