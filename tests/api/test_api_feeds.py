"""Feed health, items per status, item lookup and run detail over HTTP (`sync.admin`), on SQLite
and PostgreSQL, with runs made by real syncs to the real test destination."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from feeds.context import Context
from feeds.pipeline import exporter, indexer
from tests.conftest import bearer, library_context, make_api_key
from worker.api.app import create_app
from worker.testing.destination_server import DestinationServer


def ctx_of(client: TestClient) -> Context:
    ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def client_for(ctx: Context) -> Iterator[TestClient]:
    ctx.close()
    with TestClient(create_app(ctx.settings)) as test_client:
        test_client.headers.update(bearer(make_api_key(ctx_of(test_client), "sync.admin")))
        yield test_client


@pytest.fixture
def lib_client(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[TestClient]:
    yield from client_for(library_context(db_url, destination.url, tmp_path))


def sync_with_failures(client: TestClient, destination: DestinationServer) -> str:
    """A full sync of 12 books: 1-2 rejected, 10-12 left out of the answer (retryable, status 2);
    returns its run id."""
    destination.reject(["book-1", "book-2"], code="INVALID_VALUE", message="bad year")
    destination.omit(["book-10", "book-11", "book-12"])
    ctx = ctx_of(client)
    indexer.reindex(ctx, ctx.registry.get("books"))
    destination.clear_faults()
    [run] = client.get("/sync/runs").json()["results"]
    return str(run["id"])


def test_feed_health_reports_indexer_items_per_status_and_the_last_runs(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = sync_with_failures(lib_client, destination)
    body = lib_client.get("/sync/feeds").json()
    assert body["message"] == "success" and body["generated_at"].endswith("Z")
    [books] = body["results"]
    assert (books["feed"], books["indexer_id"], books["title"]) == (
        "books",
        "library_books",
        "Book Feed",
    )
    assert (books["status"], books["update_on"], books["schedule_status"]) == (
        "Ready",
        "Schedule",
        "idle",
    )
    assert (books["backlog"], books["lag_s"], books["export_mode"], books["suspended"]) == (
        0,
        None,
        "immediate",
        False,
    )
    assert books["items"] == {"200": 7, "400": 2, "2": 3, "0": 0, "-1": 0, "never": 0}
    assert books["last_success"]["id"] == run_id == books["last_run"]["id"]
    assert books["last_run"]["status"] == "partial"
    assert books["health"] == "amber"
    assert "2 items rejected by the destination (400)." in books["reasons"]


def test_a_pending_change_shows_as_backlog_and_lag(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    ctx = ctx_of(lib_client)
    indexer.reindex(ctx, ctx.registry.get("books"))
    with ctx.source.begin() as conn:
        conn.execute(text("UPDATE books SET title = 'Changed' WHERE book_no IN (2, 3)"))
    [books] = lib_client.get("/sync/feeds").json()["results"]
    assert books["backlog"] == 2 and books["lag_s"] is not None and books["lag_s"] >= 0
    assert books["health"] == "green"  # a fresh change is not lag yet


def test_items_of_one_status_are_listed_by_id_and_paged(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    sync_with_failures(lib_client, destination)
    rejected = lib_client.get("/sync/feeds/books/items", params={"status": "400"}).json()
    assert [(i["id"], i["status"], i["error_code"]) for i in rejected["results"]] == [
        ("book-1", "400", "INVALID_VALUE"),
        ("book-2", "400", "INVALID_VALUE"),
    ]
    assert rejected["total"] == 2 and rejected["feed"] == "books"
    page = lib_client.get("/sync/feeds/books/items", params={"status": "200", "limit": 3})
    assert page.json()["total"] == 7 and len(page.json()["results"]) == 3
    assert 'rel="next"' in page.headers["link"]
    never = lib_client.get("/sync/feeds/books/items", params={"status": "never"}).json()
    assert never["total"] == 0 and never["results"] == []


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        (
            "/sync/feeds/nope/items",
            {"status": "200"},
            400,
            "feed 'nope' is not a feed; accepted feeds: books.",
        ),
        (
            "/sync/feeds/books/items",
            {"status": "3"},
            400,
            "status '3' is not an item status; accepted: 200, 400, 2, 0, -1, never.",
        ),
        ("/sync/feeds/books/items", {}, 400, "The query parameter 'status' is not accepted"),
        (
            "/sync/feeds/books/items",
            {"status": "200", "state": "x"},
            400,
            "Unknown query parameter 'state'; accepted: limit, offset, status.",
        ),
        ("/sync/feeds", {"feed": "books"}, 400, "Unknown query parameter 'feed'; accepted: none."),
        ("/sync/items", {}, 400, "The query parameter 'q' is not accepted"),
        ("/sync/items", {"q": "  "}, 400, "The query parameter 'q' is empty"),
        ("/sync/items", {"q": "x", "id": "1"}, 400, "Unknown query parameter 'id'; accepted: q."),
        ("/sync/runs/nope", {}, 404, "No sync run 'nope': it never existed or was removed"),
        ("/sync/runs/x", {"verbose": "1"}, 400, "Unknown query parameter 'verbose'"),
    ],
)
def test_bad_input_gets_one_sentence(
    lib_client: TestClient, path: str, params: dict[str, str], status: int, message: str
) -> None:
    answer = lib_client.get(path, params=params)
    assert answer.status_code == status, answer.json()
    assert answer.json()["message"].startswith(message)
    assert set(answer.json()) == {"message"}


def test_the_new_endpoints_need_a_sync_admin_key(lib_client: TestClient) -> None:
    cdi_only = bearer(make_api_key(ctx_of(lib_client), "cdi.integration_list"))
    for path in ("/sync/feeds", "/sync/feeds/books/items?status=200", "/sync/items?q=1"):
        assert lib_client.get(path, headers=cdi_only).status_code == 403, path
        assert lib_client.get(path, headers={"Authorization": ""}).status_code == 401, path
    assert lib_client.get("/sync/runs/x", headers=cdi_only).status_code == 403


def test_run_detail_has_counters_duration_and_errors_by_category(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = sync_with_failures(lib_client, destination)
    body = lib_client.get(f"/sync/runs/{run_id}").json()
    run = body["run"]
    assert (run["id"], run["operation"], run["status"], run["new"], run["failed"]) == (
        run_id,
        "full_sync",
        "partial",
        12,
        5,
    )
    assert body["duration_s"] >= 0 and body["items_recorded"] is False
    assert [(c["category"], c["errors"], c["current"]) for c in body["categories"]] == [
        ("transient", 3, 3),
        ("property_values", 2, 2),
    ]
    assert body["errors"] == 5
    csv = lib_client.get(body["csv_url"])
    assert csv.status_code == 200 and csv.text.count("\n") == 6  # header + 5 errors
    listed = lib_client.get(body["errors_url"]).json()
    assert {e["run_id"] for e in listed["results"]} == {run_id}


def test_job_sync_status_run_ids_open_the_run_detail(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = sync_with_failures(lib_client, destination)
    key = bearer(
        make_api_key(ctx_of(lib_client), "cdi.integration_list", "cdi.integration_job_status")
    )
    [integration] = lib_client.get("/cdi/integrations", headers=key).json()["results"]
    jobs = lib_client.get(
        f"/cdi/integrations/{integration['integration_id']}/job_sync_status", headers=key
    ).json()["results"]
    assert [j["run_id"] for j in jobs] == [run_id]
    assert lib_client.get(f"/sync/runs/{jobs[0]['run_id']}").json()["run"]["id"] == run_id


def test_an_item_is_found_by_id_or_entity_key_with_its_errors_and_runs(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    run_id = sync_with_failures(lib_client, destination)
    by_id = lib_client.get("/sync/items", params={"q": "book-2"}).json()
    [report] = by_id["results"]
    item = report["item"]
    assert (item["feed"], item["id"], item["entity_key"], item["status"]) == (
        "books",
        "book-2",
        2,
        "400",
    )
    assert len(item["hash"]) == 32 and item["error_message"] == "bad year"
    assert [(e["category"], e["code"], e["run_id"]) for e in report["errors"]] == [
        ("property_values", "INVALID_VALUE", run_id)
    ]
    assert [r["id"] for r in report["runs"]] == [run_id]
    assert (report["document"], report["document_kept"]) == (None, False)  # immediate mode
    by_key = lib_client.get("/sync/items", params={"q": "2"}).json()["results"]
    assert [r["item"]["id"] for r in by_key] == ["book-2"]
    nothing = lib_client.get("/sync/items", params={"q": "book-999"}).json()
    assert (nothing["results"], nothing["message"]) == ([], "success")


def test_a_legacy_feed_keeps_the_document_as_last_built(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path, extra='export_mode = "legacy"\n')
    indexer.reindex(ctx, ctx.registry.get("books"))  # collected, not sent: status never
    for client in client_for(ctx):
        [report] = client.get("/sync/items", params={"q": "book-3"}).json()["results"]
        assert report["item"]["status"] == "never" and report["document_kept"] is True
        assert report["document"] == {"title": "Book 3", "author": "Le Guin", "tags": []}
        [books] = client.get("/sync/feeds").json()["results"]
        assert books["export_mode"] == "legacy" and books["items"]["never"] == 12
        exporter.export_pending(ctx_of(client), ctx_of(client).registry.get("books"))
        [books] = client.get("/sync/feeds").json()["results"]
        assert books["items"]["200"] == 12
        [report] = client.get("/sync/items", params={"q": "book-3"}).json()["results"]
        assert report["item"]["status"] == "200" and report["document"]["title"] == "Book 3"


def test_item_counts_are_kept_until_a_run_starts_ends_or_is_removed(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    from datetime import timedelta

    from feeds.clock import utcnow
    from feeds.history.feed_health import StatusCounts
    from feeds.state.tables import items, sync_runs

    ctx = library_context(db_url, destination.url, tmp_path)
    indexer.reindex(ctx, ctx.registry.get("books"))
    counts = StatusCounts()
    now = utcnow()
    with ctx.db.connect() as conn:
        assert counts.read(conn, now) == {"books": {200: 12}}
    with ctx.db.begin() as conn:  # a write no run made: not seen, as the pipeline never does it
        conn.execute(items.update().where(items.c.id == "book-1").values(status=400))
    with ctx.db.connect() as conn:
        assert counts.read(conn, now) == {"books": {200: 12}}
    with ctx.db.begin() as conn:  # a run starts: counted again
        conn.execute(
            sync_runs.insert().values(
                id="r1", feed="books", operation="full_sync", status="running", started_at=now
            )
        )
    with ctx.db.connect() as conn:
        assert counts.read(conn, now) == {"books": {200: 11, 400: 1}}
        conn.execute(items.update().where(items.c.id == "book-2").values(status=400))
        conn.commit()
        # While a run runs, the counts are at most 30 s old.
        assert counts.read(conn, now + timedelta(seconds=29)) == {"books": {200: 11, 400: 1}}
        assert counts.read(conn, now + timedelta(seconds=30)) == {"books": {200: 10, 400: 2}}
    ctx.close()
