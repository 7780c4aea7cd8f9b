"""Application errors (status 0): a document that cannot be built or exported is an error of its
entity or item, recorded with the reason, kept in the indexer's backlog, and rebuilt with backoff
by the resend job once its cause is gone; what the destination already holds goes back to 200
without being sent again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, text

from feeds import definitions
from feeds.commerce import demo
from feeds.context import Context
from feeds.definitions import ItemStatus, RunStatus
from feeds.history import read_model
from feeds.pipeline import exporter, indexer
from feeds.pipeline.run import Outcome
from feeds.state import feed_items as store
from feeds.state import indexer_state
from feeds.state.tables import items, rebuilds
from tests.conftest import as_dicts, library_context
from worker.testing.destination_server import DestinationServer

BOOKS = 12


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path, books=BOOKS)
    yield ctx
    ctx.close()


def sql(ctx: Context, statement: str) -> None:
    with ctx.source.begin() as conn:
        conn.execute(text(statement))


def statuses(ctx: Context, feed: str = "books") -> dict[str, int | None]:
    with ctx.db.connect() as conn:
        query = select(items.c.id, items.c.status).where(items.c.feed == feed)
        return dict(conn.execute(query).all())


def queued(ctx: Context) -> dict[int, int]:
    """Entities waiting for a rebuild, with their attempts so far."""
    with ctx.db.connect() as conn:
        return dict(conn.execute(select(rebuilds.c.entity_key, rebuilds.c.attempts)).all())


def open_errors(ctx: Context, feed: str = "books") -> list[dict]:
    with ctx.db.connect() as conn:
        return as_dicts(read_model.list_errors(conn, feed=feed))


def resend(ctx: Context) -> Outcome | None:
    time.sleep(0.12)  # past the test's backoff_max_s
    return exporter.resend_failed(ctx, ctx.registry.get("books"))


def test_items_that_could_not_be_built_are_retried_with_backoff_once_the_source_is_fixed(
    lib: Context, destination: DestinationServer
) -> None:
    feed = lib.registry.get("books")
    indexer.reindex(lib, feed)
    sql(lib, "UPDATE books SET title = 'Second edition' WHERE book_no IN (1, 2)")
    sql(lib, "ALTER TABLE authors RENAME TO authors_moved")  # the builder joins authors

    [partial] = indexer.update_all_views(lib)
    assert partial.status is RunStatus.ERROR and partial.counts.failed == 2
    assert statuses(lib)["book-1"] == statuses(lib)["book-2"] == ItemStatus.APP_ERROR
    assert queued(lib) == {1: 1, 2: 1}
    assert {(e["item_id"], e["code"]) for e in open_errors(lib)} == {
        ("1", "BUILD_FAILED"),
        ("2", "BUILD_FAILED"),
    }
    with lib.db.connect() as conn:
        assert store.pending_rebuilds(conn) == {"books": 2}  # indexer:status counts them

    still_broken = resend(lib)  # the resend job tries again: same cause, one more attempt
    assert still_broken is not None and still_broken.counts.failed == 2
    assert queued(lib) == {1: 2, 2: 2}

    sql(lib, "ALTER TABLE authors_moved RENAME TO authors")
    fixed = resend(lib)
    assert fixed is not None and fixed.status is RunStatus.SUCCESS
    assert fixed.counts.rows_synced == 2
    assert set(statuses(lib).values()) == {ItemStatus.SENT}
    assert queued(lib) == {} and open_errors(lib) == []
    titles = {i: item["data"]["title"] for i, item in destination.accepted["books"].items()}
    assert titles["book-1"] == titles["book-2"] == "Second edition"
    assert resend(lib) is None  # nothing left due


def test_a_failed_build_then_a_good_rebuild_leaves_accepted_items_sent_without_resending(
    lib: Context, destination: DestinationServer
) -> None:
    feed = lib.registry.get("books")
    indexer.reindex(lib, feed)
    sent_before = destination.count("books")
    sql(lib, "ALTER TABLE authors RENAME TO authors_moved")
    failed = indexer.reindex(lib, feed)
    assert failed.status is RunStatus.ERROR and failed.counts.failed == BOOKS
    assert set(statuses(lib).values()) == {ItemStatus.APP_ERROR}
    with lib.db.connect() as conn:
        assert (
            indexer_state.get_state(conn, feed.indexer_id).status
            is definitions.IndexerStatus.INVALID
        )

    sql(lib, "ALTER TABLE authors_moved RENAME TO authors")
    [rebuilt] = indexer.reindex_all_invalid(lib)
    assert rebuilt.status is RunStatus.SUCCESS
    assert (rebuilt.counts.skipped, rebuilt.counts.rows_synced) == (BOOKS, 0)
    assert set(statuses(lib).values()) == {ItemStatus.SENT}
    assert destination.count("books") == sent_before  # the destination had them all
    assert queued(lib) == {} and open_errors(lib) == []


def test_a_nan_is_an_application_error_of_its_item_and_is_sent_once_fixed(
    ctx: Context, export_dir: Path
) -> None:
    demo.seed(ctx.source, 5)
    products = ctx.registry.get("products")
    indexer.ensure_subscriptions(ctx)
    indexer.reindex(ctx, products)
    sql(ctx, "UPDATE products SET weight = 'NaN', name = 'Odd weight' WHERE id = 3")
    sql(ctx, "UPDATE products SET name = 'Renamed' WHERE id = 4")

    outcomes = {o.feed.name: o for o in indexer.update_all_views(ctx)}
    assert outcomes["products"].status is RunStatus.PARTIAL
    assert outcomes["products"].counts.rows_synced == 1
    [error] = open_errors(ctx, "products")
    assert (error["item_id"], error["code"], error["category"]) == (
        "3",
        "UNEXPORTABLE_VALUE",
        "other",
    )
    assert error["message"].startswith("weight is nan: NaN and infinite numbers cannot be exported")
    assert statuses(ctx, "products")["3"] == ItemStatus.APP_ERROR
    exported = [
        orjson.loads(line) for line in (export_dir / "products.jsonl").read_bytes().splitlines()
    ]
    assert "Odd weight" not in {i["data"]["name"] for i in exported}  # the NaN version never left

    sql(ctx, "UPDATE products SET weight = 1.5 WHERE id = 3")
    indexer.update_all_views(ctx)
    assert statuses(ctx, "products")["3"] == ItemStatus.SENT and open_errors(ctx, "products") == []
    last = orjson.loads((export_dir / "products.jsonl").read_bytes().splitlines()[-1])
    assert (last["id"], last["data"]["name"], last["data"]["weight"]) == ("3", "Odd weight", 1.5)
