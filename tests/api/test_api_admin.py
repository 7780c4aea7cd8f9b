"""The admin endpoints (`sync.admin`) over HTTP, on SQLite and PostgreSQL: run history with filters
and sorting, errors by category, CSV export, resync of selected errors against the real test
destination.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from config.settings import Settings
from feeds.context import Context
from feeds.history.categories import HELP
from feeds.pipeline import indexer
from feeds.state.tables import sync_runs
from tests.conftest import bearer, library_context, make_api_key
from worker.api.app import create_app
from worker.testing.destination_server import DestinationServer


def ctx_of(client: TestClient) -> Context:
    ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        test_client.headers.update(bearer(make_api_key(ctx_of(test_client), "sync.admin")))
        yield test_client


T0 = datetime(2026, 11, 20, 12, 0)
RUNS = [
    # id, feed, operation, status, started (minutes after T0), duration in minutes (None: running)
    ("a", "products", "full_sync", "success", 0, 50),
    ("b", "prices", "partial_sync", "partial", 10, 5),
    ("c", "products", "partial_sync", "error", 24 * 60, 1),
    ("d", "products", "resend_failed", "success", 24 * 60 + 5, 30),
    ("e", "orders", "partial_sync", "running", 2 * 24 * 60, None),
    ("f", "products", "partial_sync", "success", 2 * 24 * 60 + 1, 2),
]


def add_runs(ctx: Context) -> None:
    with ctx.db.begin() as conn:
        conn.execute(
            sync_runs.insert(),
            [
                {
                    "id": run_id,
                    "feed": feed,
                    "operation": operation,
                    "status": status,
                    "started_at": T0 + timedelta(minutes=start),
                    "finished_at": None
                    if minutes is None
                    else T0 + timedelta(minutes=start + minutes),
                }
                for run_id, feed, operation, status, start, minutes in RUNS
            ],
        )


def run_ids(client: TestClient, **params: object) -> list[str]:
    response = client.get("/sync/runs", params=params)
    assert response.status_code == 200, response.json()
    return [r["id"] for r in response.json()["results"]]


def test_runs_newest_first_with_every_field(client: TestClient) -> None:
    add_runs(ctx_of(client))
    response = client.get("/sync/runs")
    body = response.json()
    assert (body["message"], body["total"], body["limit"], body["offset"]) == ("success", 6, 50, 0)
    assert [r["id"] for r in body["results"]] == ["f", "e", "d", "c", "b", "a"]
    assert body["results"][-1] == {
        "id": "a",
        "feed": "products",
        "operation": "full_sync",
        "status": "success",
        "started_at": "2026-11-20T12:00:00.000Z",
        "finished_at": "2026-11-20T12:50:00.000Z",
        "new": 0,
        "updated": 0,
        "deleted": 0,
        "failed": 0,
        "skipped": 0,
        "rows_synced": 0,
        "rows_failed_with_errors": 0,
        "last_timestamp_synced": None,
        "message": None,
    }


def test_runs_filtered_by_date_range_feed_operation_and_status(client: TestClient) -> None:
    add_runs(ctx_of(client))
    assert run_ids(client, since="2026-11-21") == ["f", "e", "d", "c"]
    assert run_ids(client, until="2026-11-21") == ["d", "c", "b", "a"]  # that day included
    assert run_ids(client, since="2026-11-21T12:03:00Z", until="2026-11-22T12:00:30+00:00") == [
        "e",
        "d",
    ]
    assert run_ids(client, feed="products") == ["f", "d", "c", "a"]
    assert run_ids(client, operation="partial_sync") == ["f", "e", "c", "b"]
    assert run_ids(client, status="success", feed="products", operation="partial_sync") == ["f"]


def test_runs_sorted_by_end_time_put_running_ones_first(client: TestClient) -> None:
    add_runs(ctx_of(client))
    # Ends: a 12:50, b 12:15, c +1d 12:01, d +1d 12:35, e running, f +2d 12:03.
    assert run_ids(client, sort="end") == ["e", "f", "d", "c", "a", "b"]


def test_runs_are_paged_with_total_and_links(client: TestClient) -> None:
    add_runs(ctx_of(client))
    first = client.get("/sync/runs", params={"limit": 4})
    assert [r["id"] for r in first.json()["results"]] == ["f", "e", "d", "c"]
    assert first.json()["total"] == 6
    assert first.headers["link"] == '<http://testserver/sync/runs?offset=4&limit=4>; rel="next"'
    second = client.get("/sync/runs", params={"limit": 4, "offset": 4})
    assert [r["id"] for r in second.json()["results"]] == ["b", "a"]
    assert second.headers["link"] == '<http://testserver/sync/runs?offset=0&limit=4>; rel="prev"'


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"feed": "nope"}, "feed 'nope' is not a feed; accepted feeds: products, "),
        ({"since": "yesterday"}, "since 'yesterday' is not a date; accepted: YYYY-MM-DD"),
        # The day after the last representable date: a 400, not an overflow (500).
        ({"until": "9999-12-31"}, "until '9999-12-31' is not a date; accepted: YYYY-MM-DD"),
        ({"status": "done"}, "The query parameter 'status' = 'done' is not accepted: Input should"),
        ({"sort": "size"}, "The query parameter 'sort' = 'size' is not accepted"),
        ({"limit": "0"}, "The query parameter 'limit' = '0' is not accepted"),
    ],
)
def test_bad_filters_get_one_sentence(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    response = client.get("/sync/runs", params=params)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


def test_admin_endpoints_need_a_sync_admin_key(client: TestClient) -> None:
    cdi_only = bearer(make_api_key(ctx_of(client), "cdi.integration_list"))
    for method, path in [
        ("GET", "/sync/runs"),
        ("GET", "/sync/errors"),
        ("GET", "/sync/errors.csv"),
        ("POST", "/sync/errors/resync"),
    ]:
        response = client.request(method, path, headers=cdi_only, json={"error_ids": [1]})
        assert (response.status_code, response.json()) == (
            403,
            {"message": "This API key lacks the permission sync.admin."},
        )
        response = client.request(method, path, headers={"Authorization": ""})
        assert response.status_code == 401


# --- errors, CSV, resync, against the real destination ---------------------------------------


@pytest.fixture
def lib_client(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[TestClient]:
    ctx = library_context(db_url, destination.url, tmp_path)
    ctx.close()
    with TestClient(create_app(ctx.settings)) as test_client:
        test_client.headers.update(bearer(make_api_key(ctx_of(test_client), "sync.admin")))
        yield test_client


def sync_with_rejections(client: TestClient, destination: DestinationServer) -> None:
    destination.reject(["book-1", "book-2", "book-3"], code="INVALID_VALUE", message="bad year")
    destination.reject(["book-4"], code="MISSING_ASSOCIATION", message="no such author")
    ctx = ctx_of(client)
    indexer.reindex(ctx, ctx.registry.get("books"))
    destination.clear_faults()


def test_errors_by_category_with_counts_and_resolution(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    sync_with_rejections(lib_client, destination)
    body = lib_client.get("/sync/errors").json()
    assert body["message"] == "success"
    assert [(c["category"], c["errors"], c["records"]) for c in body["categories"]] == [
        ("property_values", 3, 3),
        ("associations", 1, 1),
    ]
    assert body["categories"][1]["title"] == "Associations"
    assert body["categories"][1]["resolution"] == HELP["associations"].resolution
    assert "MISSING_ASSOCIATION" in body["categories"][1]["resolution"]
    assert body["total"] == 4
    assert {(e["item_id"], e["category"], e["code"], e["message"]) for e in body["results"]} == {
        ("book-1", "property_values", "INVALID_VALUE", "bad year"),
        ("book-2", "property_values", "INVALID_VALUE", "bad year"),
        ("book-3", "property_values", "INVALID_VALUE", "bad year"),
        ("book-4", "associations", "MISSING_ASSOCIATION", "no such author"),
    }
    only = lib_client.get("/sync/errors", params={"category": "associations"}).json()
    assert [e["item_id"] for e in only["results"]] == ["book-4"]
    assert [c["category"] for c in only["categories"]] == ["associations"]


def test_errors_are_filtered_by_the_run_that_recorded_them(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    sync_with_rejections(lib_client, destination)  # run 1: books 1-4 rejected
    ctx = ctx_of(lib_client)
    destination.reject(["book-9"], code="DUPLICATE_VALUE", message="twice")
    with ctx.source.begin() as conn:
        conn.execute(text("UPDATE books SET title = 'Retitled' WHERE book_no = 9"))
    indexer.update_all_views(ctx)  # run 2: book 9 rejected
    second = lib_client.get("/sync/runs", params={"operation": "partial_sync"}).json()
    [run_id] = [r["id"] for r in second["results"]]
    only = lib_client.get("/sync/errors", params={"run_id": run_id}).json()
    assert [(e["item_id"], e["run_id"]) for e in only["results"]] == [("book-9", run_id)]
    assert [(c["category"], c["errors"]) for c in only["categories"]] == [("duplicates", 1)]
    csv_rows = list(
        csv.DictReader(
            io.StringIO(lib_client.get("/sync/errors.csv", params={"run_id": run_id}).text)
        )
    )
    assert [r["item_id"] for r in csv_rows] == ["book-9"]
    assert lib_client.get("/sync/errors", params={"run_id": "nope"}).json()["total"] == 0


def test_a_query_parameter_an_endpoint_does_not_take_is_refused_not_ignored(
    lib_client: TestClient,
) -> None:
    for path in ("/sync/errors", "/sync/runs", "/sync/errors.csv", "/sync/usage"):
        answer = lib_client.get(path, params={"runid": "x"})
        assert answer.status_code == 400, path
        message = answer.json()["message"]
        assert message.startswith("Unknown query parameter 'runid'; accepted: ")
    accepted = lib_client.get("/sync/errors", params={"runid": "x"}).json()["message"]
    assert "run_id" in accepted and "category" in accepted


def test_every_category_has_a_resolution_paragraph() -> None:
    from feeds.export.protocol import ErrorCategory

    assert set(HELP) == set(ErrorCategory)
    assert all(len(h.resolution) > 150 for h in HELP.values())


def test_errors_csv_has_a_header_and_one_row_per_error(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    sync_with_rejections(lib_client, destination)
    response = lib_client.get("/sync/errors.csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="sync-errors-')
    lines = response.text.splitlines()
    assert (
        lines[0]
        == "feed,item_id,category,code,message,first_seen,last_seen,attempts,resolved,run_id,field,value"
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted((r["item_id"], r["category"], r["code"]) for r in rows) == [
        ("book-1", "property_values", "INVALID_VALUE"),
        ("book-2", "property_values", "INVALID_VALUE"),
        ("book-3", "property_values", "INVALID_VALUE"),
        ("book-4", "associations", "MISSING_ASSOCIATION"),
    ]
    assert all(r["feed"] == "books" and r["attempts"] == "1" for r in rows)
    assert all(r["first_seen"].endswith("Z") and "T" in r["first_seen"] for r in rows)
    filtered = lib_client.get("/sync/errors.csv", params={"category": "associations"})
    assert [r["item_id"] for r in csv.DictReader(io.StringIO(filtered.text))] == ["book-4"]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+1+1", "'+1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\n=1+1"),
        ("ok\r=1+1\r\n", "ok\n=1+1\n"),
        ("-5", "-5"),
        ("-1.5e3", "-1.5e3"),
        ("book-5", "book-5"),
        ("a = b", "a = b"),
    ],
)
def test_error_csv_cells_a_spreadsheet_would_run_as_a_formula_start_with_a_quote(
    cell: str, written: str
) -> None:
    from feeds.history.csv_export import errors_csv
    from feeds.history.read_model import ErrorRow

    seen = datetime(2026, 11, 22, 10, 0)
    error = ErrorRow(1, "run", "books", cell, "other", None, cell, seen, seen, -3, False, None)
    text = "".join(errors_csv([error]))
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert (row["item_id"], row["message"], row["attempts"]) == (written, written, "-3")


def test_errors_csv_download_shows_formulas_from_the_destination_as_text(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-1"], code="@SUM(1+1)", message='=HYPERLINK("http://evil.example")')
    destination.reject(["book-2"], code="INVALID_VALUE", message="-2+3+cmd|' /C calc'!A0")
    ctx = ctx_of(lib_client)
    indexer.reindex(ctx, ctx.registry.get("books"))
    response = lib_client.get("/sync/errors.csv")
    rows = {r["item_id"]: r for r in csv.DictReader(io.StringIO(response.text))}
    assert (rows["book-1"]["code"], rows["book-1"]["message"]) == (
        "'@SUM(1+1)",
        '\'=HYPERLINK("http://evil.example")',
    )
    assert rows["book-2"]["message"] == "'-2+3+cmd|' /C calc'!A0"


def test_resync_of_selected_errors_clears_them(
    lib_client: TestClient, destination: DestinationServer
) -> None:
    sync_with_rejections(lib_client, destination)
    errors = {e["item_id"]: e["id"] for e in lib_client.get("/sync/errors").json()["results"]}
    destination.reset()
    chosen = [errors["book-1"], errors["book-4"]]
    response = lib_client.post("/sync/errors/resync", json={"error_ids": chosen})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["message"], sorted(body["resolved"]), body["still_failing"]) == (
        "success",
        sorted(chosen),
        [],
    )
    assert destination.accepted_ids("books") == {"book-1", "book-4"}
    left = lib_client.get("/sync/errors").json()
    assert sorted(e["item_id"] for e in left["results"]) == ["book-2", "book-3"]
    runs = lib_client.get("/sync/runs", params={"operation": "resync_errors"}).json()["results"]
    assert [(r["status"], r["rows_synced"]) for r in runs] == [("success", 2)]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (
            list(range(1, 102)),
            "At most 100 sync errors can be resynced per request; 101 were selected.",
        ),
        ([], "Select at least one sync error to resync."),
        ([999_999], "There are no sync errors with these ids: 999999."),
    ],
)
def test_resync_refuses_more_than_100_no_or_unknown_errors(
    lib_client: TestClient, ids: list[int], message: str
) -> None:
    response = lib_client.post("/sync/errors/resync", json={"error_ids": ids})
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


def test_resync_body_must_be_a_list_of_ids(lib_client: TestClient) -> None:
    response = lib_client.post("/sync/errors/resync", json={"error_ids": "all"})
    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "The request body 'error_ids' = 'all' is not accepted"
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/sync/errors/resync", "{", "The request body is not valid JSON: expecting "),
        ("PUT", "/sync/notifications", "not json", "The request body is not valid JSON: "),
        (
            "POST",
            "/sync/errors/resync",
            "",
            "The request body is missing; accepted: a JSON object.",
        ),
    ],
)
def test_a_body_that_is_not_json_or_is_missing_gets_one_sentence(
    client: TestClient, method: str, path: str, body: str, message: str
) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


# --- API-call usage and notification settings (the domain of feeds.budget / notifications) ---


def test_usage_counts_the_calls_to_the_destination_in_24_hours(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path, EXPORT_DAILY_CALL_ALLOCATION="100")
    indexer.reindex(ctx, ctx.registry.get("books"))  # 12 books in batches of 3: 4 calls
    ctx.close()
    with TestClient(create_app(ctx.settings)) as client:
        client.headers.update(bearer(make_api_key(ctx_of(client), "sync.admin")))
        response = client.get("/sync/usage")
    assert response.status_code == 200
    [usage] = response.json()["results"]
    assert (usage["destination"], usage["counted"], usage["calls_24h"]) == (
        destination.url,
        True,
        4,
    )
    assert (usage["allocation"], usage["remaining"], usage["paused"]) == (100, 96, False)
    assert usage["window_start"].endswith("Z") and usage["resumes_at"] is None


def test_usage_of_a_file_destination_counts_no_calls(client: TestClient) -> None:
    [usage] = client.get("/sync/usage").json()["results"]
    assert (usage["counted"], usage["calls_24h"], usage["remaining"]) == (False, 0, None)


def test_notification_settings_can_be_read_and_changed(client: TestClient) -> None:
    assert client.get("/sync/notifications").json() == {
        "frequency": "off",
        "webhook_url": None,
        "source": "config",
        "updated_at": None,
        "message": "success",
    }
    changed = client.put(
        "/sync/notifications",
        json={"frequency": "daily", "webhook_url": "https://hooks.example.com/feedsync"},
    )
    assert changed.status_code == 200
    now = client.get("/sync/notifications").json()
    assert (now["frequency"], now["webhook_url"], now["source"]) == (
        "daily",
        "https://hooks.example.com/feedsync",
        "database",
    )
    refused = client.put("/sync/notifications", json={"frequency": "hourly"})
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("Notification frequency 'hourly' is not accepted")
    assert client.put("/sync/notifications", json={"frequency": "weekly"}).status_code == 400
    assert client.get("/sync/notifications").json()["frequency"] == "daily"
