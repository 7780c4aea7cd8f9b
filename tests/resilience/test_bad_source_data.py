"""Bad source data: NULL keys, NULL, empty, overlong and duplicate item ids, invalid UTF-8, NaN, a
10 MB text, rows deleted while their batch is read or in a transaction still open. Each costs its
own item or entity an error with a category, the rest is synced, and once the application fixes
the data the minute jobs send it: the destination then holds what a fresh build gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Connection

from feeds.context import Context
from feeds.history import read_model
from tests import parts_feeds
from tests.conftest import as_dicts
from tests.parts_feeds import parts
from tests.resilience import products_feed
from tests.resilience.conftest import Deploy
from tests.resilience.ending import Convergence, RecordProperty, end
from worker.jobs import run_job
from worker.testing.converge import settle
from worker.testing.destination_server import DestinationServer
from worker.testing.reconcile import reconcile

pytestmark = [pytest.mark.resilience]

TEN_MB = 10 * 1024 * 1024
BODY_LIMIT = 4_000_000  # the destination's: it answers 413 to a larger request


def sql(ctx: Context, *statements: str) -> None:
    with ctx.source.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def open_errors(ctx: Context) -> dict[str, tuple[str, str]]:
    """Open sync errors: item id (or entity key) → (category, code)."""
    with ctx.db.connect() as conn:
        return {
            str(e["item_id"]): (str(e["category"]), str(e["code"]))
            for e in as_dicts(read_model.list_errors(conn))
        }


def waiting(ctx: Context, destination: DestinationServer) -> set[str]:
    """What the reconciliation explains by a cause still there (it must hold otherwise)."""
    result = reconcile(ctx, destination.holdings, destination.duplicates)
    assert result.ok, result.problems()
    return {i for feed in result.feeds.values() for i in feed.waiting}


def test_nan_a_10_mb_text_and_invalid_utf8_cost_their_own_items_until_fixed(
    open_catalog: Deploy,
    db_url: str,
    destination: DestinationServer,
    record_property: RecordProperty,
) -> None:
    ctx = open_catalog(db_url, 3000)
    destination.too_large_over(None, max_bytes=BODY_LIMIT)
    huge = "lorem ipsum " * (TEN_MB // 12)
    with ctx.source.begin() as conn:
        conn.execute(text("UPDATE products SET weight = 'NaN' WHERE id = 3"))
        conn.execute(text("UPDATE products SET description = :d WHERE id = 5"), {"d": huge})
    broken = {"3": ("other", "UNEXPORTABLE_VALUE"), "5": ("other", "TOO_LARGE")}
    sqlite = ctx.db.dialect.name == "sqlite"
    if sqlite:  # PostgreSQL refuses invalid UTF-8 in a text column; SQLite stores what it is given
        sql(ctx, "UPDATE products SET name = CAST(x'4ec3' AS TEXT) WHERE id = 7")
        broken["7"] = ("other", "BUILD_FAILED")
    convergence = Convergence()

    convergence.settle(ctx)
    assert open_errors(ctx) == broken
    assert waiting(ctx, destination) >= {"3", "5"} | ({"entity:7"} if sqlite else set())
    with ctx.source.begin() as conn:  # the application fixes its data
        conn.execute(
            text("UPDATE products SET weight = 1.25, description = 'short' WHERE id IN (3, 5)")
        )
        conn.execute(text("UPDATE products SET name = 'Fixed' WHERE id = 7"))
    convergence.settle(ctx)

    end(
        ctx,
        destination,
        record_property,
        scenario=f"bad values ({ctx.db.dialect.name})",
        load="3000 products",
        faults="a NaN, a 10 MB text (the destination takes 4 MB)"
        + (", invalid UTF-8" if sqlite else "")
        + ", then fixed",
        convergence=convergence,
    )
    assert open_errors(ctx) == {} and waiting(ctx, destination) == set()


PARTS = 3000  # two batches of the default 2000 entities


def test_null_keys_and_bad_or_duplicate_item_ids_cost_their_own_entities_until_fixed(
    deploy: Deploy,
    db_url: str,
    destination: DestinationServer,
    record_property: RecordProperty,
) -> None:
    ctx = deploy(db_url, parts_feeds)
    parts_feeds.metadata.create_all(ctx.source)
    rows = [
        {"row_no": n, "part_no": n, "code": f"P{n}", "name": f"Part {n}", "price": 2.5}
        for n in range(1, PARTS + 1)
    ]
    bad = {
        5: {"part_no": None},  # no entity at all: not exported, not an error
        10: {"code": None},
        11: {"code": ""},
        12: {"code": "P" * 300},
        20: {"code": "P3"},  # the same batch as entity 3
        2500: {"code": "P4"},  # a later batch than entity 4
    }
    for row_no, values in bad.items():
        rows[row_no - 1].update(values)
    with ctx.source.begin() as conn:
        conn.execute(parts.insert(), rows)
    convergence = Convergence()

    convergence.settle(ctx)
    assert open_errors(ctx) == {
        str(entity): ("other", "BUILD_FAILED") for entity in (10, 11, 12, 20, 2500)
    }
    assert destination.accepted["parts"]["P4"]["data"]["name"] == "Part 4"
    assert "P5" not in destination.accepted["parts"]
    with ctx.source.begin() as conn:  # the application fixes its data
        for row_no in bad:
            conn.execute(
                update(parts)
                .where(parts.c.row_no == row_no)
                .values(part_no=row_no, code=f"P{row_no}")
            )
    convergence.settle(ctx)

    result = end(
        ctx,
        destination,
        record_property,
        scenario=f"bad ids ({ctx.db.dialect.name})",
        load=f"{PARTS} rows of a table without key constraints",
        faults="a NULL key, a NULL, an empty and a 300-character item id, "
        "2 duplicate ids (same batch, other batch), then fixed",
        convergence=convergence,
    )
    assert result.feeds["parts"].matched == PARTS and open_errors(ctx) == {}


@pytest.fixture
def app_writes() -> Iterator[list]:
    """The application's writes that `products_feed` runs while a batch is read."""
    yield products_feed.while_reading
    products_feed.while_reading.clear()


def test_rows_deleted_or_changed_while_their_batch_is_read_are_synced_by_the_next_run(
    open_catalog: Deploy,
    db_url: str,
    destination: DestinationServer,
    record_property: RecordProperty,
    app_writes: list,
) -> None:
    ctx = open_catalog(db_url, 5000)  # three batches of 2000 entities, in this process
    delete = "DELETE FROM {t} WHERE {c} = {n}"

    def delete_product(n: int) -> str:
        return "; ".join(
            delete.format(t=t, c="product_id", n=n)
            for t in ("product_prices", "product_categories", "product_attribute_values")
        )

    def the_application_writes() -> None:
        with ctx.source.begin() as conn:
            for n in (10, 4500):  # read already, in this batch; not read yet, in a later one
                for statement in delete_product(n).split("; "):
                    conn.execute(text(statement))
                conn.execute(text(f"UPDATE products SET parent_id = NULL WHERE parent_id = {n}"))
                conn.execute(text(delete.format(t="products", c="id", n=n)))
            conn.execute(text("UPDATE products SET name = 'Changed meanwhile' WHERE id = 20"))

    app_writes.append(the_application_writes)  # during the onboarding full sync
    convergence = Convergence()
    convergence.settle(ctx)
    held = destination.holdings("products")
    assert held["10"][1] is True and "4500" not in held
    assert destination.accepted["products"]["20"]["data"]["name"] == "Changed meanwhile"

    def a_partial_sync_meanwhile() -> None:
        sql(ctx, "UPDATE products SET name = 'Changed again' WHERE id IN (30, 31)")

    sql(ctx, "UPDATE products SET name = 'Changed first' WHERE id = 30")
    app_writes.append(a_partial_sync_meanwhile)  # while the partial sync reads product 30
    convergence.settle(ctx)

    end(
        ctx,
        destination,
        record_property,
        scenario=f"rows changed while read ({ctx.db.dialect.name})",
        load="5000 products",
        faults="2 products deleted and 1 changed while the full sync reads, "
        "2 changed while a partial sync reads",
        convergence=convergence,
    )
    assert destination.accepted["products"]["30"]["data"]["name"] == "Changed again"


@pytest.mark.postgres
def test_a_product_deleted_in_a_transaction_still_open_during_the_sync_is_deleted(
    open_catalog: Deploy,
    postgres_url: str,
    destination: DestinationServer,
    record_property: RecordProperty,
) -> None:
    ctx = open_catalog(postgres_url, 3000)
    assert settle(ctx).converged
    app: Connection = ctx.source.connect()
    try:
        app.begin()  # deletes product 7, slowly: its changelog versions are below the next ones
        for t in ("product_prices", "product_categories", "product_attribute_values"):
            app.execute(text(f"DELETE FROM {t} WHERE product_id = 7"))
        app.execute(text("DELETE FROM products WHERE id = 7"))
        sql(ctx, "UPDATE products SET name = 'Committed first' WHERE id = 8")
        run_job(ctx, "indexer_update_all_views")  # the deletion is still open
        app.commit()
    finally:
        app.close()
    convergence = Convergence()
    convergence.settle(ctx)

    end(
        ctx,
        destination,
        record_property,
        scenario="a deletion committed after a later change (postgresql)",
        load="3000 products",
        faults="a partial sync while the deleting transaction is open",
        convergence=convergence,
    )
    assert destination.holdings("products")["7"][1] is True
    assert destination.accepted["products"]["8"]["data"]["name"] == "Committed first"
