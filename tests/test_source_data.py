"""Bad data in an application's own tables (tests/parts_feeds.py: no constraints on the feed's key
or item ids): one bad row costs its own entity, reported as an application error, never the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from config.settings import load_settings
from feeds import indexer, runs
from feeds.context import Context, open_context
from feeds.store import items
from tests.parts_feeds import metadata, parts
from worker.testing.destination_server import DestinationServer

PARTS = 12


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
            for e in runs.list_errors(conn, feed="parts")
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
