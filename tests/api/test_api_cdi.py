"""The `cdi` endpoints of SPEC §7 over HTTP (FastAPI's TestClient), on SQLite and PostgreSQL:
every status code and header, pagination both ways, cursors, keys, permissions, rate limits.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from config.settings import Settings, load_settings
from feeds.context import Context
from feeds.definitions import Feed, Watch
from feeds.history.integrations import integration_id
from feeds.pipeline.run import lock_name
from feeds.state.locks import Lock
from feeds.state.tables import sync_runs
from tests.conftest import bearer, library_context, make_api_key
from tests.library_feeds import build_books
from worker.api import apikeys
from worker.api.app import create_app
from worker.testing.destination_server import DestinationServer

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Clock:
    """The rate limiter's clock, moved by the tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A trigger that records what it was asked to sync."""

    def __init__(self) -> None:
        self.feeds: list[str] = []

    def __call__(self, ctx: Context, feed: Feed) -> None:
        self.feeds.append(feed.name)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 23, 10, 0, 5))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(settings: Settings, clock: Clock, recorder: Recorder) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock, trigger=recorder)) as test_client:
        yield test_client


def ctx_of(client: TestClient) -> Context:
    ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def key(client: TestClient, *permissions: str) -> dict[str, str]:
    return bearer(make_api_key(ctx_of(client), *permissions))


def products_id(client: TestClient) -> str:
    return str(integration_id("products", ctx_of(client).settings.destination("products")))


STATUSES = ["success", "partial", "error", "config_error", "rolled_back"]


def add_runs(ctx: Context, feed: str, count: int, first: datetime) -> list[str]:
    """`count` finished runs of `feed`, a minute apart; their ids, newest first."""
    rows = [
        {
            "id": f"{feed[:4]}{n:03d}",
            "feed": feed,
            "operation": "partial_sync",
            "status": STATUSES[n % len(STATUSES)],
            "started_at": first + timedelta(minutes=n),
            "finished_at": first + timedelta(minutes=n, seconds=30),
            "rows_synced": n,
            "rows_failed_with_errors": n % 3,
            "last_timestamp_synced": first + timedelta(minutes=n, seconds=-5),
        }
        for n in range(count)
    ]
    with ctx.db.begin() as conn:
        conn.execute(sync_runs.insert(), rows)
    return [r["id"] for r in reversed(rows)]


def links(response: httpx.Response) -> dict[str, str]:
    """rel → URL of the Link header."""
    found = {}
    for part in filter(None, response.headers.get("link", "").split(", ")):
        url, rel = part.split("; ")
        found[rel.removeprefix('rel="').removesuffix('"')] = url.strip("<>")
    return found


def job_ids(ctx: Context, response: httpx.Response) -> list[str]:
    """The run ids of a job_sync_status page (matched by start time, which the tests make unique)."""
    with ctx.db.connect() as conn:
        by_start = {
            r.started_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z": r.id
            for r in conn.execute(sync_runs.select())
        }
    return [by_start[job["sync_start_time"]] for job in response.json()["results"]]


# --- GET /cdi/integrations ------------------------------------------------------------------


def test_integrations_are_the_feeds_bound_to_their_destination(client: TestClient) -> None:
    ctx = ctx_of(client)
    response = client.get("/cdi/integrations", headers=key(client, "cdi.integration_list"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "link" not in response.headers
    body = response.json()
    assert body["message"] == "success"
    names = [i["integration_name"] for i in body["results"]]
    assert sorted(names) == sorted(ctx.registry.names())
    products = next(i for i in body["results"] if i["integration_name"] == "products")
    assert products == {
        "integration_id": str(integration_id("products", ctx.settings.export_url)),
        "integration_name": "products",
        "destination": ctx.settings.export_url,
        "export_mode": "immediate",
        "indexer_mode": "schedule",
        "last_job_start_time": None,
        "last_job_status": None,
        "next_scheduled_run": products["next_scheduled_run"],
    }
    assert uuid.UUID(products["integration_id"]).version == 5
    assert products["next_scheduled_run"].endswith(":00.000Z")


def test_integrations_list_the_newest_job_first(client: TestClient) -> None:
    ctx = ctx_of(client)
    add_runs(ctx, "prices", 2, datetime(2026, 11, 23, 9, 0))
    add_runs(ctx, "orders", 1, datetime(2026, 11, 23, 9, 30))
    response = client.get("/cdi/integrations", headers=key(client, "cdi.integration_list"))
    results = response.json()["results"]
    assert [i["integration_name"] for i in results[:2]] == ["orders", "prices"]
    assert results[0]["last_job_start_time"] == "2026-11-23T09:30:00.000Z"
    assert results[0]["last_job_status"] == "success"
    assert results[1]["last_job_start_time"] == "2026-11-23T09:01:00.000Z"
    assert results[1]["last_job_status"] == "partial"
    assert all(i["last_job_start_time"] is None for i in results[2:])


def test_an_integration_id_is_stable_and_belongs_to_one_destination() -> None:
    first = integration_id("products", "http://dest.example/v1")
    assert first == integration_id("products", "http://dest.example/v1")
    assert first != integration_id("products", "http://other.example/v1")
    assert first != integration_id("prices", "http://dest.example/v1")


MANY_FEEDS = [
    Feed(
        name=f"shelf{n:02d}",
        indexer_id=f"library_shelf{n:02d}",
        title=f"Shelf {n:02d} Feed",
        key_table="books",
        key_column="book_no",
        build=build_books,
        watches=(Watch("books", "book_no"),),
    )
    for n in range(12)
]
FEEDS = MANY_FEEDS  # this module is also a feed module (feed_modules = ["tests.api.test_api_cdi"])


def test_more_than_10_integrations_are_paged_with_links(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text('feed_modules = ["tests.api.test_api_cdi"]\nbuiltin_feeds = false\n')
    settings = load_settings(
        {
            "DATABASE_URL": db_url,
            "EXPORT_URL": f"file://{tmp_path}/export",
            "FEEDSYNC_CONFIG": str(config),
            "LOG_FORMAT": "json",
        }
    )
    with TestClient(create_app(settings)) as client:
        add_runs(ctx_of(client), "shelf05", 1, datetime(2026, 11, 23, 9, 0))
        headers = key(client, "cdi.integration_list")
        first = client.get("/cdi/integrations", headers=headers)
        names = [i["integration_name"] for i in first.json()["results"]]
        assert names == ["shelf05", *[f"shelf{n:02d}" for n in range(12) if n != 5][:9]]
        assert set(links(first)) == {"next"}
        second = client.get(links(first)["next"], headers=headers)
        assert [i["integration_name"] for i in second.json()["results"]] == ["shelf10", "shelf11"]
        assert set(links(second)) == {"prev"}
        back = client.get(links(second)["prev"], headers=headers)
        assert [i["integration_name"] for i in back.json()["results"]] == names
        assert set(links(back)) == {"next"}


# --- GET /cdi/integrations/{id}/job_sync_status ---------------------------------------------


def test_job_sync_status_lists_runs_newest_first_in_iso_8601(client: TestClient) -> None:
    ctx = ctx_of(client)
    add_runs(ctx, "products", 5, datetime(2026, 11, 23, 8, 0))
    add_runs(ctx, "prices", 3, datetime(2026, 11, 23, 8, 0))
    response = client.get(
        f"/cdi/integrations/{products_id(client)}/job_sync_status",
        headers=key(client, "cdi.integration_job_status"),
    )
    assert response.status_code == 200
    assert "link" not in response.headers
    body = response.json()
    assert body["message"] == "success"
    assert [r["sync_start_time"] for r in body["results"]] == [
        f"2026-11-23T08:0{n}:00.000Z" for n in (4, 3, 2, 1, 0)
    ]
    assert body["results"][0] == {
        "run_id": "prod004",  # its detail: GET /sync/runs/prod004
        "job_status": "error",  # a rolled-back run is reported as an error
        "sync_start_time": "2026-11-23T08:04:00.000Z",
        "sync_finish_time": "2026-11-23T08:04:30.000Z",
        "last_timestamp_synced": "2026-11-23T08:03:55.000Z",
        "rows_synced": 4,
        "rows_failed_with_errors": 1,
    }
    assert {r["job_status"] for r in body["results"]} == {
        "success",
        "partial",
        "error",
        "config_error",
    }


def test_a_running_job_has_no_finish_time(client: TestClient) -> None:
    ctx = ctx_of(client)
    with ctx.db.begin() as conn:
        conn.execute(
            sync_runs.insert().values(
                id="r1",
                feed="products",
                operation="full_sync",
                status="running",
                started_at=datetime(2026, 11, 23, 8, 0, 0, 250000),
            )
        )
    response = client.get(
        f"/cdi/integrations/{products_id(client)}/job_sync_status",
        headers=key(client, "cdi.integration_job_status"),
    )
    assert response.json()["results"] == [
        {
            "run_id": "r1",
            "job_status": "running",
            "sync_start_time": "2026-11-23T08:00:00.250Z",
            "sync_finish_time": None,
            "last_timestamp_synced": None,
            "rows_synced": 0,
            "rows_failed_with_errors": 0,
        }
    ]


def test_pagination_across_25_runs_both_ways(client: TestClient) -> None:
    ctx = ctx_of(client)
    expected = add_runs(ctx, "products", 25, datetime(2026, 11, 23, 8, 0))
    headers = key(client, "cdi.integration_job_status")
    url = f"/cdi/integrations/{products_id(client)}/job_sync_status"

    pages, rels = [], []
    response = client.get(url, headers=headers)
    while True:
        assert response.status_code == 200
        pages.append(job_ids(ctx, response))
        rels.append(set(links(response)))
        if "next" not in links(response):
            break
        response = client.get(links(response)["next"], headers=headers)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for page in pages for i in page] == expected
    assert rels == [{"next"}, {"prev", "next"}, {"prev"}]

    back = [pages[-1]]
    while "prev" in links(response):
        response = client.get(links(response)["prev"], headers=headers)
        back.append(job_ids(ctx, response))
    assert back[::-1] == pages
    assert set(links(response)) == {"next"}


@pytest.mark.parametrize(("runs", "link"), [(10, set()), (11, {"next"})])
def test_a_link_header_only_past_10_items(client: TestClient, runs: int, link: set[str]) -> None:
    add_runs(ctx_of(client), "products", runs, datetime(2026, 11, 23, 8, 0))
    response = client.get(
        f"/cdi/integrations/{products_id(client)}/job_sync_status",
        headers=key(client, "cdi.integration_job_status"),
    )
    assert len(response.json()["results"]) == 10
    assert set(links(response)) == link
    if link:
        assert response.headers["link"].startswith(
            f"<http://testserver/cdi/integrations/{products_id(client)}/job_sync_status?cursor="
        )


def test_forged_or_foreign_cursors_are_400(client: TestClient) -> None:
    ctx = ctx_of(client)
    add_runs(ctx, "products", 12, datetime(2026, 11, 23, 8, 0))
    add_runs(ctx, "prices", 12, datetime(2026, 11, 23, 8, 0))
    headers = key(client, "cdi.integration_job_status", "cdi.integration_list")
    url = f"/cdi/integrations/{products_id(client)}/job_sync_status"
    good = links(client.get(url, headers=headers))["next"].split("cursor=")[1]
    prices = str(integration_id("prices", ctx.settings.export_url))
    foreign = links(client.get(f"/cdi/integrations/{prices}/job_sync_status", headers=headers))
    body, issued, mac = good.split(".")
    altered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + f".{issued}.{mac}"
    reversed_mac = f"{body}.{issued}.{mac[::-1]}"
    for cursor in ["nonsense", altered, reversed_mac, foreign["next"].split("=")[1]]:
        response = client.get(url, params={"cursor": cursor}, headers=headers)
        assert (response.status_code, response.json()) == (400, {"message": "Invalid cursor"})
    assert client.get(url, params={"cursor": good}, headers=headers).status_code == 200


def test_a_cursor_signed_by_another_deployment_is_400(client: TestClient) -> None:
    """Every process of one deployment shares the signing secret (in the worker database); another
    deployment's cursors are refused."""
    ctx = ctx_of(client)
    add_runs(ctx, "products", 12, datetime(2026, 11, 23, 8, 0))
    headers = key(client, "cdi.integration_job_status")
    url = f"/cdi/integrations/{products_id(client)}/job_sync_status"
    cursor = links(client.get(url, headers=headers))["next"].split("cursor=")[1]
    with TestClient(create_app(ctx.settings)) as same_deployment:
        assert (
            same_deployment.get(url, params={"cursor": cursor}, headers=headers).status_code == 200
        )
    client.app.state.cursor_secret = b"another deployment"  # type: ignore[attr-defined]
    response = client.get(url, params={"cursor": cursor}, headers=headers)
    assert (response.status_code, response.json()) == (400, {"message": "Invalid cursor"})


@pytest.mark.parametrize(
    "integration", ["not-a-uuid", str(uuid.uuid4()), str(integration_id("products", "file://x"))]
)
def test_an_unknown_integration_id_is_400(client: TestClient, integration: str) -> None:
    headers = key(client)
    for response in (
        client.get(f"/cdi/integrations/{integration}/job_sync_status", headers=headers),
        client.post(f"/cdi/integrations/{integration}/sync", headers=headers),
    ):
        assert (response.status_code, response.json()) == (
            400,
            {"message": "Invalid integration ID"},
        )


# --- keys and permissions -------------------------------------------------------------------


def endpoints(client: TestClient) -> list[tuple[str, str, str]]:
    pid = products_id(client)
    return [
        ("GET", "/cdi/integrations", "cdi.integration_list"),
        ("POST", f"/cdi/integrations/{pid}/sync", "cdi.integration_sync"),
        ("GET", f"/cdi/integrations/{pid}/job_sync_status", "cdi.integration_job_status"),
    ]


def test_a_missing_or_unknown_key_is_401(client: TestClient) -> None:
    revoked_key = make_api_key(ctx_of(client))
    revoked = apikeys.list_keys(ctx_of(client).db)[-1]
    apikeys.revoke_key(ctx_of(client).db, revoked.id)
    for method, path, _ in endpoints(client):
        for headers in (
            {},
            {"Authorization": "Bearer "},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            bearer("fsk_unknown"),
            bearer(revoked_key),
        ):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert set(response.json()) == {"message"}


def test_a_key_without_the_permission_is_403(client: TestClient, recorder: Recorder) -> None:
    for method, path, permission in endpoints(client):
        others = [p.value for p in apikeys.Permission if p.value != permission]
        response = client.request(method, path, headers=key(client, *others))
        assert response.status_code == 403
        assert response.json() == {"message": f"This API key lacks the permission {permission}."}
        assert client.request(method, path, headers=key(client, permission)).status_code < 300
    assert recorder.feeds == ["products"]


def test_keys_are_stored_hashed(client: TestClient) -> None:
    raw = make_api_key(ctx_of(client))
    with ctx_of(client).db.connect() as conn:
        stored = [tuple(str(v) for v in row) for row in conn.execute(apikeys.api_keys.select())]
    assert all(raw not in value for row in stored for value in row)
    assert any(apikeys.digest(raw) in row for row in stored)


# --- rate limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "permission", "limit"),
    [
        ("GET", "/cdi/integrations", "cdi.integration_list", 50),
        ("POST", "/cdi/integrations/{pid}/sync", "cdi.integration_sync", 20),
        ("GET", "/cdi/integrations/{pid}/job_sync_status", "cdi.integration_job_status", 100),
    ],
)
def test_rate_limits_per_key_and_minute(
    client: TestClient, clock: Clock, method: str, path: str, permission: str, limit: int
) -> None:
    path = path.format(pid=products_id(client))
    headers = key(client, permission)
    for n in range(limit):
        response = client.request(method, path, headers=headers)
        assert response.status_code < 300
        assert response.headers["x-ratelimit-remaining"] == str(limit - n - 1)
    refused = client.request(method, path, headers=headers)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "55"  # the clock stands at hh:mm:05
    assert refused.json()["message"].startswith(f"Rate limit of {limit} requests per minute")
    # Another key has its own budget; the next minute brings a new one.
    assert client.request(method, path, headers=key(client, permission)).status_code < 300
    clock.now += timedelta(seconds=55)
    assert client.request(method, path, headers=headers).status_code < 300


def test_rate_limits_are_shared_by_every_api_process(
    settings: Settings, client: TestClient, clock: Clock
) -> None:
    headers = key(client, "cdi.integration_list")
    for _ in range(30):
        assert client.get("/cdi/integrations", headers=headers).status_code == 200
    with TestClient(create_app(settings, clock=clock)) as other_process:
        for _ in range(20):
            assert other_process.get("/cdi/integrations", headers=headers).status_code == 200
        assert other_process.get("/cdi/integrations", headers=headers).status_code == 429
    assert client.get("/cdi/integrations", headers=headers).status_code == 429


# --- POST /cdi/integrations/{id}/sync: the real background sync -----------------------------


@pytest.fixture
def library_settings(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> Iterator[Settings]:
    ctx = library_context(db_url, destination.url, tmp_path)
    ctx.close()
    yield ctx.settings


def wait_for_job(client: TestClient, url: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        results = client.get(url, headers=headers).json()["results"]
        if results and results[0]["job_status"] != "running":
            return dict(results[0])
        time.sleep(0.05)
    raise AssertionError("the queued sync did not finish in 20 s")


def test_a_triggered_sync_runs_and_shows_in_job_status(
    library_settings: Settings, destination: DestinationServer
) -> None:
    with TestClient(create_app(library_settings)) as client:
        headers = key(client)
        books = str(integration_id("books", destination.url))
        response = client.post(f"/cdi/integrations/{books}/sync", headers=headers)
        assert (response.status_code, response.json()) == (202, {"message": "success"})
        job = wait_for_job(client, f"/cdi/integrations/{books}/job_sync_status", headers)
        assert (job["job_status"], job["rows_synced"]) == ("success", 12)
        assert destination.accepted_ids("books") == {f"book-{n}" for n in range(1, 13)}


def test_a_sync_while_another_job_holds_the_feed_is_429(
    library_settings: Settings, destination: DestinationServer
) -> None:
    with TestClient(create_app(library_settings)) as client:
        headers = key(client)
        ctx = ctx_of(client)
        url = f"/cdi/integrations/{integration_id('books', destination.url)}/sync"
        holder = Lock(ctx.db, lock_name(ctx.registry.get("books")))
        assert holder.acquire()
        response = client.post(url, headers=headers)
        assert (response.status_code, response.json()) == (
            429,
            {"message": "Another job is in progress"},
        )
        assert "retry-after" not in response.headers
        holder.release()
        # A sync in progress (a slow destination) refuses a second request too.
        destination.slow_next(1, 1.0)
        assert client.post(url, headers=headers).status_code == 202
        second = client.post(url, headers=headers)
        assert (second.status_code, second.json()) == (
            429,
            {"message": "Another job is in progress"},
        )
