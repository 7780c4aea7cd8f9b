"""The dashboard's feed health, run detail, items per status and item lookup through FastAPI's
TestClient, on SQLite and PostgreSQL, with runs from real syncs to the real test destination."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.context import Context
from feeds.history import read_model
from feeds.pipeline import indexer
from tests.api.test_dashboard import login, make_app
from tests.conftest import library_context
from worker.testing.destination_server import DestinationServer


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


@pytest.fixture
def lib_client(lib: Context) -> Iterator[TestClient]:
    with TestClient(make_app(lib)) as test_client:
        login(test_client, lib)
        yield test_client


def synced(lib: Context, destination: DestinationServer) -> str:
    """A full sync of 12 books: 1-2 rejected, 10-12 retryable; the run's id."""
    destination.reject(["book-1", "book-2"], code="INVALID_VALUE", message="bad year")
    destination.omit(["book-10", "book-11", "book-12"])
    indexer.reindex(lib, lib.registry.get("books"))
    destination.clear_faults()
    with lib.db.connect() as conn:
        [run] = read_model.list_runs(conn)
    return run.id


def text_of(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


def test_feed_health_is_the_first_section_with_counts_linking_to_the_items(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = synced(lib, destination)
    page = lib_client.get("/dashboard").text
    assert page.index('id="health"') < page.index('id="usage"') < page.index('id="runs"')
    row = re.search(r'<tr data-feed="books" class="health-row">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = text_of(row.group(1))
    assert cells.startswith("amber 2 items rejected by the destination (400).")
    assert (
        "Book Feed Reindex Full resync (send every item again) Suspend Set Update on Save Apply Ready Schedule idle 0 —"
        in cells
    )
    assert cells.endswith("immediate 7 2 3 0 0 0")
    assert f'href="/dashboard/runs/{run_id}"' in row.group(1)
    assert 'href="/dashboard/feeds/books/items?status=400"' in row.group(1)
    assert 'aria-label="2 rejected items of books"' in row.group(1)
    assert "/items?status=-1" not in row.group(1)  # a zero is no link
    assert f'<a class="run-link" href="/dashboard/runs/{run_id}"' in page


def test_the_items_of_one_status_are_listed_with_their_errors(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    synced(lib, destination)
    page = lib_client.get("/dashboard/feeds/books/items", params={"status": "400"})
    assert page.status_code == 200
    assert "books: items in status 400 (rejected)" in page.text
    assert re.findall(r'<td class="record"><a href="[^"]+">([^<]+)</a>', page.text) == [
        "book-1",
        "book-2",
    ]
    assert "INVALID_VALUE bad year" in text_of(page.text)
    retryable = lib_client.get("/dashboard/feeds/books/items?status=2").text
    assert "3 items" in retryable
    assert (
        "No items of books are in this status."
        in lib_client.get("/dashboard/feeds/books/items?status=never").text
    )


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/dashboard/feeds/nope/items?status=200", 404, "&#39;nope&#39; is not a feed"),
        ("/dashboard/feeds/books/items?status=7", 400, "&#39;7&#39; is not an item status"),
        ("/dashboard/runs/nope", 404, "No sync run &#39;nope&#39;"),
    ],
)
def test_a_bad_link_gets_a_page_that_says_why(
    lib_client: TestClient, path: str, status: int, message: str
) -> None:
    answer = lib_client.get(path)
    assert answer.status_code == status and message in answer.text


def test_run_detail_shows_counters_message_duration_and_errors_by_category(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = synced(lib, destination)
    page = lib_client.get(f"/dashboard/runs/{run_id}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Run of books: full_sync" in text and "Status partial" in text
    assert re.search(r"Duration \d+\.\d s", text)
    assert (
        "New Updated Deleted Failed Skipped Rows synced Rows failed with errors 12 0 0 5 0 7"
        in text
    )
    assert "Transient 3 3" in text and "Property values 2 2" in text
    assert "The feed table keeps each item's last status, not the run that set it" in text
    csv_link = re.search(r'id="run-csv" href="([^"]+)"', page.text)
    assert csv_link is not None
    exported = lib_client.get(csv_link.group(1).replace("&amp;", "&"))
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["item_id"] for r in rows) == [
        "book-1",
        "book-10",
        "book-11",
        "book-12",
        "book-2",
    ]
    assert {r["run_id"] for r in rows} == {run_id}


def test_a_run_without_errors_says_so(lib: Context, lib_client: TestClient) -> None:
    indexer.reindex(lib, lib.registry.get("books"))
    with lib.db.connect() as conn:
        [run] = read_model.list_runs(conn)
    page = lib_client.get(f"/dashboard/runs/{run.id}").text
    assert 'id="no-run-errors"' in page and "Status success" in text_of(page)


def test_item_lookup_by_id_or_entity_key_shows_status_errors_and_runs(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = synced(lib, destination)
    for query in ("book-2", "2", " book-2 "):
        page = lib_client.get("/dashboard/items", params={"q": query})
        assert page.status_code == 200
        text = text_of(page.text)
        assert "book-2 in books" in text, query
        assert "Status 400 (rejected)" in text and "property_values INVALID_VALUE: bad year" in text
        assert f'href="/dashboard/runs/{run_id}"' in page.text
        assert "Not kept: the feed table keeps a document only for feeds in legacy" in text
    missing = lib_client.get("/dashboard/items", params={"q": "book-404"}).text
    assert "No feed has an item book-404" in missing
    assert 'id="no-match"' not in lib_client.get("/dashboard/items").text


def test_the_drilldown_pages_need_a_session(lib: Context) -> None:
    client = TestClient(make_app(lib))
    for path in ("/dashboard/runs/x", "/dashboard/items?q=1", "/dashboard/feeds/x/items"):
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/login")
