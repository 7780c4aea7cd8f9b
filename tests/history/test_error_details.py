"""HubSpot-style error details: the field and value a destination names in a rejection, the errors
of picklist and property categories grouped by field, the records a missing associated record
holds back, and links to a record in the source and in the destination from the TOML's URL
templates; against the real test destination, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.context import Context
from feeds.export.protocol import named_field
from feeds.history import error_details
from feeds.pipeline import indexer
from tests.api.test_dashboard import login
from tests.conftest import bearer, library_context, make_api_key
from worker.api.app import create_app
from worker.testing.destination_server import DestinationServer

TEMPLATES = (
    'record_url = "https://shop.example/admin/book/{entity}"\n'
    'destination_url = "https://crm.example/objects/books/{id}"\n'
)


@pytest.mark.parametrize(
    ("error", "message", "named"),
    [
        ({"field": "color", "value": "mauve"}, "", ("color", "mauve")),
        ({"context": {"propertyName": ["genre"], "value": ["poetry"]}}, "", ("genre", "poetry")),
        ({}, "Property 'shelf_code' does not exist", ("shelf_code", None)),
        ({}, 'the field "author_id" points to no author', ("author_id", None)),
        ({"field": ["a", "b"]}, "", ("a", None)),
        ({"field": {"x": 1}, "value": True}, "title too long", (None, None)),
    ],
)
def test_the_field_and_value_a_rejection_names(
    error: dict[str, object], message: str, named: tuple[str | None, str | None]
) -> None:
    assert named_field(error, message) == named


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path, extra=TEMPLATES)
    destination.reject(
        ["book-1", "book-2"], "INVALID_ENUM_VALUE", "not an option", field="genre", value="poetry"
    )
    destination.reject(
        ["book-3"], "INVALID_ENUM_VALUE", "not an option", field="genre", value="epic"
    )
    destination.reject(["book-4"], "INVALID_ENUM_VALUE", "Property 'format' has no such option")
    destination.reject(
        ["book-5", "book-6", "book-7"],
        "MISSING_ASSOCIATION",
        "no author",
        field="author",
        value="9",
    )
    destination.reject(["book-8"], "MISSING_ASSOCIATION", "no shelf", field="shelf", value="A1")
    indexer.reindex(ctx, ctx.registry.get("books"))
    yield ctx
    ctx.close()


def test_picklist_errors_group_by_field_and_associations_by_the_missing_record(
    lib: Context,
) -> None:
    with lib.db.connect() as conn:
        picklists = error_details.groups(conn, "picklists", "books")
        associations = error_details.groups(conn, "associations")
        assert error_details.groups(conn, "other") == []
    assert [(g.field, g.errors, g.records, g.values) for g in picklists] == [
        ("genre", 3, 3, ["epic", "poetry"]),
        ("format", 1, 1, []),
    ]
    assert [(g.field, g.value, g.records, sorted(g.item_ids)) for g in associations] == [
        ("author", "9", 3, ["book-5", "book-6", "book-7"]),
        ("shelf", "A1", 1, ["book-8"]),
    ]


def test_the_api_and_the_dashboard_show_the_groups_and_the_record_links(lib: Context) -> None:
    with TestClient(create_app(lib.settings)) as client:
        ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
        key = bearer(make_api_key(ctx, "sync.admin"))
        body = client.get("/sync/errors", params={"feed": "books"}, headers=key).json()
        by_category = {c["category"]: c for c in body["categories"]}
        assert by_category["associations"]["groups"][0] == {
            "field": "author",
            "value": "9",
            "errors": 3,
            "records": 3,
            "item_ids": by_category["associations"]["groups"][0]["item_ids"],
            "values": [],
        }
        assert [g["field"] for g in by_category["picklists"]["groups"]] == ["genre", "format"]
        [book5] = [e for e in body["results"] if e["item_id"] == "book-5"]
        assert (book5["field"], book5["value"]) == ("author", "9")
        assert book5["source_url"] == "https://shop.example/admin/book/5"
        assert book5["destination_url"] == "https://crm.example/objects/books/book-5"

        login(client, ctx)
        page = client.get("/dashboard").text
        card = re.search(r'id="card-associations">(.*?)</article>', page, re.S)
        assert card is not None
        held = re.search(
            r'<li class="group" data-field="author" data-value="9">(.*?)</li>', card.group(1), re.S
        )
        assert held and "is missing at the destination" in held.group(1)
        assert sorted(re.findall(r'q=(book-\d)"', held.group(1))) == ["book-5", "book-6", "book-7"]
        picklists = re.search(r'id="card-picklists">(.*?)</article>', page, re.S)
        assert picklists is not None
        assert re.search(
            r'<tr data-field="genre"><td class="field"><code>genre</code></td>\s*<td class="num">3</td><td class="num">3</td>\s*<td class="values">epic, poetry</td>',
            picklists.group(1),
        )
        assert 'href="https://shop.example/admin/book/5"' in card.group(1)
        assert 'href="https://crm.example/objects/books/book-5"' in card.group(1)


def test_the_item_lookup_links_the_record_in_the_source_and_the_destination(lib: Context) -> None:
    with TestClient(create_app(lib.settings)) as client:
        login(client, client.app.state.ctx)  # type: ignore[attr-defined]
        page = client.get("/dashboard/items", params={"q": "book-5"}).text
        assert '<a class="source-link" href="https://shop.example/admin/book/5"' in page
        assert 'href="https://crm.example/objects/books/book-5"' in page
