"""Bad data in an application's own tables (tests/parts_feeds.py: no constraints on the feed's key
or item ids): one bad row costs its own entity, reported as an application error, never the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from config.context import open_context
from config.settings import load_settings
from feeds.context import Context
from feeds.definitions import ItemStatus
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.state.tables import items
from tests.conftest import as_dicts
from tests.parts_feeds import metadata, parts
from worker.testing.destination_server import DestinationServer

PARTS = 12
ALL = {f"P{n}" for n in range(1, PARTS + 1)}


@pytest.fixture
def shop(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    config = tmp_path / "parts.toml"
    config.write_text('feed_modules = ["tests.parts_feeds"]\nbuiltin_feeds = false\n')
    settings = load_settings(
        {
            "DATABASE_URL": db_url,
            "EXPORT_URL": destination.url,
            "FEEDSYNC_CONFIG": str(config),
            "LOG_FORMAT": "json",
        }
    )
    ctx = open_context(settings)
    metadata.create_all(ctx.source)
    rows = [
        {"row_no": n, "part_no": n, "code": f"P{n}", "name": f"Part {n}", "price": 1.5}
        for n in range(1, PARTS + 1)
    ]
    with ctx.source.begin() as conn:
        conn.execute(parts.insert(), rows)
    indexer.ensure_subscriptions(ctx)
    yield ctx
    ctx.close()


def change(ctx: Context, row_no: int, **values: object) -> None:
    with ctx.source.begin() as conn:
        conn.execute(update(parts).where(parts.c.row_no == row_no).values(**values))


def statuses(ctx: Context) -> dict[str, int | None]:
    with ctx.db.connect() as conn:
        return dict(conn.execute(select(items.c.id, items.c.status)).all())


def open_errors(ctx: Context) -> dict[str, tuple[str, str]]:
    with ctx.db.connect() as conn:
        return {
            str(e["item_id"]): (str(e["code"]), str(e["message"]))
            for e in as_dicts(read_model.list_errors(conn, feed="parts"))
        }


def sent(destination: DestinationServer) -> set[str]:
    return {i for i, (_, deleted) in destination.holdings("parts").items() if not deleted}


def test_a_row_whose_key_is_null_is_no_entity_and_the_others_sync(
    shop: Context, destination: DestinationServer
) -> None:
    change(shop, 5, part_no=None)
    outcome = indexer.reindex(shop, shop.registry.get("parts"))
    assert outcome.succeeded, outcome.message
    assert sent(destination) == {f"P{n}" for n in range(1, PARTS + 1)} - {"P5"}

    change(shop, 5, part_no=5)  # fixed: an entity like the others
    indexer.update_all_views(shop)
    assert sent(destination) == {f"P{n}" for n in range(1, PARTS + 1)}


def test_a_driving_table_whose_keys_are_all_null_has_no_entity(
    shop: Context, destination: DestinationServer
) -> None:
    with shop.source.begin() as conn:
        conn.execute(update(parts).values(part_no=None))
    outcome = indexer.reindex(shop, shop.registry.get("parts"))
    assert outcome.succeeded, outcome.message
    assert sent(destination) == set() and statuses(shop) == {}


@pytest.mark.parametrize("code", [None, "", "x" * 256], ids=["null", "empty", "too-long"])
def test_an_unusable_item_id_is_an_error_of_its_entity_and_goes_through_once_fixed(
    shop: Context, destination: DestinationServer, code: str | None
) -> None:
    change(shop, 5, code=code)
    outcome = indexer.reindex(shop, shop.registry.get("parts"))
    assert (outcome.status, outcome.counts.rows_synced, outcome.counts.failed) == ("partial", 11, 1)
    assert sent(destination) == ALL - {"P5"}
    [(error_code, message)] = open_errors(shop).values()
    assert list(open_errors(shop)) == ["5"]  # the error names the entity: its item has no id
    assert error_code == "BUILD_FAILED" and "item ids are non-empty strings" in message

    change(shop, 5, code="P5")
    indexer.update_all_views(shop)
    assert sent(destination) == ALL and open_errors(shop) == {}


def test_an_item_id_built_for_two_entities_is_an_error_of_the_later_one(
    shop: Context, destination: DestinationServer
) -> None:
    change(shop, 7, code="P3")
    outcome = indexer.reindex(shop, shop.registry.get("parts"))
    assert (outcome.counts.rows_synced, outcome.counts.failed) == (11, 1)
    assert destination.accepted["parts"]["P3"]["data"]["name"] == "Part 3"
    assert open_errors(shop) == {
        "7": ("BUILD_FAILED", "item id 'P3' is also built for entity 3: item ids must be unique")
    }

    change(shop, 7, code="P7")
    indexer.update_all_views(shop)
    assert sent(destination) == ALL and open_errors(shop) == {}
    assert set(statuses(shop).values()) == {ItemStatus.SENT}


def test_an_item_id_taken_from_an_entity_of_another_batch_is_an_error_until_fixed(
    shop: Context, destination: DestinationServer
) -> None:
    indexer.reindex(shop, shop.registry.get("parts"))
    change(shop, 9, code="P2", name="Not part 2")  # entity 2, which holds P2, is not in the batch
    indexer.update_all_views(shop)
    assert destination.accepted["parts"]["P2"]["data"]["name"] == "Part 2"
    assert list(open_errors(shop)) == ["9"]
    assert statuses(shop)["P9"] == ItemStatus.APP_ERROR  # its entity cannot be exported now

    change(shop, 2, code="P22")  # the application moves the id: entity 9 may have it now
    change(shop, 9, name="Part 2, renamed")
    indexer.update_all_views(shop)
    held = destination.holdings("parts")
    assert destination.accepted["parts"]["P2"]["data"]["name"] == "Part 2, renamed"
    assert (held["P22"][1], held["P9"][1]) == (False, True)  # P9 is gone: its entity is P2 now
    assert open_errors(shop) == {}
