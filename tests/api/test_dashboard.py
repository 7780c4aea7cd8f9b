"""The admin dashboard's routes through FastAPI's TestClient: login and session, 401/403 handling,
filters, sort order, pagination over thousands of runs, error cards, resync and its 100 cap.

Runs on SQLite and PostgreSQL; errors come from real syncs to the real test destination.
"""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import Operation
from feeds.history import read_model
from feeds.pipeline import indexer
from feeds.pipeline.resync_errors import resync_errors
from feeds.state.tables import sync_runs
from tests.conftest import as_dicts, library_context
from worker.api import apikeys, session
from worker.api.app import create_app
from worker.api.dashboard import RUNS_PER_PAGE, RunFilters, parse_filters
from worker.testing.destination_server import DestinationServer


def make_app(ctx: Context) -> FastAPI:
    """The real application, on the test's databases."""
    return create_app(ctx.settings)


def login(client: TestClient, ctx: Context, permissions: tuple[str, ...] = ("sync.admin",)) -> str:
    """Create a key with these permissions and log in with it; returns the raw key."""
    _, raw = apikeys.create_key(ctx.db, "admin", permissions)
    answer = client.post("/dashboard/login", data={"api_key": raw}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return raw


def run_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)"', html)


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, "the page has no form token"
    return match.group(1)


def error_ids(html: str, category: str) -> list[str]:
    card = re.search(rf'<article class="card" id="card-{category}">(.*?)</article>', html, re.S)
    assert card, f"no {category} card"
    return re.findall(r'name="error_id" value="(\d+)"', card.group(1))


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(make_app(ctx)) as test_client:
        yield test_client


# --- login, session, permissions ---------------------------------------------------------------


def test_without_a_session_the_dashboard_redirects_to_the_login_form(client: TestClient) -> None:
    answer = client.get("/dashboard", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/login")
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    assert 'name="api_key"' in form.text and 'type="password"' in form.text


def test_an_unknown_key_shows_the_form_again_with_a_message(client: TestClient) -> None:
    answer = client.post("/dashboard/login", data={"api_key": "fsk_not-a-key"})
    assert answer.status_code == 401
    assert "That API key is not valid" in answer.text and 'name="api_key"' in answer.text
    assert session.SESSION_COOKIE not in answer.cookies
    empty = client.post("/dashboard/login", data={"api_key": " "})
    assert empty.status_code == 401 and "Enter an API key" in empty.text


def test_a_key_without_sync_admin_gets_a_403_page_and_no_session(
    client: TestClient, ctx: Context
) -> None:
    _, raw = apikeys.create_key(ctx.db, "lister", ["cdi.integration_list"])
    answer = client.post("/dashboard/login", data={"api_key": raw}, follow_redirects=False)
    assert answer.status_code == 403
    assert "does not hold the sync.admin permission" in answer.text
    assert session.SESSION_COOKIE not in answer.cookies
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_login_sets_an_httponly_samesite_strict_cookie_that_is_not_the_key(
    client: TestClient, ctx: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    _, raw = apikeys.create_key(ctx.db, "admin", ["sync.admin"])
    answer = client.post("/dashboard/login", data={"api_key": raw}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{session.SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower()
    assert raw not in cookie and raw[4:] not in cookie
    page = client.get("/dashboard")
    assert page.status_code == 200 and "Sync status" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    captured = capsys.readouterr()
    assert raw not in captured.out + captured.err


@pytest.mark.parametrize("tamper", ["mac", "expiry", "key id", "garbage", "expired"])
def test_a_forged_or_expired_session_cookie_is_refused(
    client: TestClient, ctx: Context, tamper: str
) -> None:
    login(client, ctx)
    token = client.cookies[session.SESSION_COOKIE]
    key_id, expires, mac = token.split(".")
    secret = apikeys.shared_secret(ctx.db, session.SECRET_NAME)
    with ctx.db.connect() as conn:
        key_hash = conn.execute(
            apikeys.api_keys.select().where(apikeys.api_keys.c.id == int(key_id))
        ).one()
    forged = {
        "mac": f"{key_id}.{expires}.{'0' * len(mac)}",
        "expiry": f"{key_id}.{int(expires) + 3600}.{mac}",
        "key id": f"{int(key_id) + 1}.{expires}.{mac}",
        "garbage": "not-a-session",
        "expired": session.sign(secret, int(key_id), key_hash.key_hash, int(time.time()) - 1),
    }[tamper]
    client.cookies.set(session.SESSION_COOKIE, forged)
    answer = client.get("/dashboard", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/login")


def test_session_tokens_parse_only_ascii_digits_and_fail_on_any_change() -> None:
    secret, digest = b"s" * 32, "d" * 64
    token = session.sign(secret, 7, digest, 2_000_000_000)
    assert session.parse(token) == (7, 2_000_000_000)
    assert session.valid(secret, token, digest, now=1_900_000_000)
    assert not session.valid(secret, token, digest, now=2_000_000_001)  # expired
    assert not session.valid(b"t" * 32, token, digest, now=1_900_000_000)  # another secret
    assert not session.valid(secret, token, "e" * 64, now=1_900_000_000)  # the key changed
    for bad in ("²7.2000000000.ab", "7.2000000000", "7.x.ab", "", "1." * 150):
        assert session.parse(bad) is None


def test_revoking_the_key_ends_its_session(client: TestClient, ctx: Context) -> None:
    login(client, ctx)
    assert client.get("/dashboard", follow_redirects=False).status_code == 200
    [key] = apikeys.list_keys(ctx.db)
    apikeys.revoke_key(ctx.db, key.id)
    answer = client.get("/dashboard", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/login")


def test_a_session_whose_key_lost_sync_admin_gets_403(client: TestClient, ctx: Context) -> None:
    login(client, ctx)
    with ctx.db.begin() as conn:
        conn.execute(apikeys.api_keys.update().values(permissions="cdi.integration_list"))
    answer = client.get("/dashboard", follow_redirects=False)
    assert answer.status_code == 403 and "sync.admin" in answer.text


def test_logout_ends_the_session(client: TestClient, ctx: Context) -> None:
    login(client, ctx)
    page = client.get("/dashboard")
    answer = client.post(
        "/dashboard/logout", data={"csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/login")
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


# --- the sync-status table ---------------------------------------------------------------------

FEEDS = ("products", "prices", "categories")
STATUSES = ("success", "success", "partial", "error", "success", "config_error")


def seed_runs(ctx: Context, count: int, now: datetime) -> list[dict[str, Any]]:
    """`count` finished runs, one every 4 minutes back from `now` (about 8 days for 3,000), with
    durations that make the end-time order differ from the start-time order; every 97th runs still."""
    operations = [o.value for o in Operation]
    rows = []
    for n in range(count):
        started = now - timedelta(minutes=4 * n + 1)
        running = n % 97 == 5
        rows.append(
            {
                "id": f"r{n:05d}",
                "feed": FEEDS[n % 3],
                "operation": operations[n % len(operations)],
                "status": "running" if running else STATUSES[n % len(STATUSES)],
                "started_at": started,
                "finished_at": None if running else started + timedelta(seconds=(n * 37) % 900),
                "new": n % 11,
                "updated": n % 5,
                "deleted": n % 3,
                "failed": n % 2,
                "skipped": n % 7,
                "rows_synced": n % 11,
                "rows_failed_with_errors": n % 2,
            }
        )
    with ctx.db.begin() as conn:
        conn.execute(sync_runs.insert(), rows)
    return rows


def by_start(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["started_at"], r["id"]), reverse=True)]


def by_end(rows: list[dict[str, Any]]) -> list[str]:
    def key(r: dict[str, Any]) -> tuple[bool, datetime, datetime, str]:
        return (
            r["finished_at"] is None,
            r["finished_at"] or datetime.min,
            r["started_at"],
            r["id"],
        )

    return [r["id"] for r in sorted(rows, key=key, reverse=True)]


@pytest.fixture
def seeded(ctx: Context) -> list[dict[str, Any]]:
    return seed_runs(ctx, 3000, utcnow())


def since_default(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    start = datetime.combine(utcnow().date() - timedelta(days=5), datetime.min.time())
    return [r for r in rows if r["started_at"] >= start]


def test_the_table_shows_the_last_five_days_newest_first_one_page_at_a_time(
    client: TestClient, ctx: Context, seeded: list[dict[str, Any]]
) -> None:
    login(client, ctx)
    recent = since_default(seeded)
    assert 0 < len(recent) < len(seeded)  # older runs exist and are left out
    started = time.perf_counter()
    page = client.get("/dashboard")
    elapsed = time.perf_counter() - started
    assert run_ids(page.text) == by_start(recent)[:RUNS_PER_PAGE]
    pages = -(-len(recent) // RUNS_PER_PAGE)
    assert f"{len(recent):,} runs · page 1 of {pages}" in page.text
    assert elapsed < 2.0, f"the dashboard took {elapsed:.2f} s over 3,000 runs"

    third = client.get("/dashboard?page=3")
    assert run_ids(third.text) == by_start(recent)[2 * RUNS_PER_PAGE : 3 * RUNS_PER_PAGE]
    last = client.get(f"/dashboard?page={pages}")
    assert run_ids(last.text) == by_start(recent)[(pages - 1) * RUNS_PER_PAGE :]
    beyond = client.get(f"/dashboard?page={pages + 5}")
    assert run_ids(beyond.text) == run_ids(last.text)
    first_row = re.search(r'<tr data-run="r00000">(.*?)</tr>', page.text, re.S)
    assert first_row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", first_row.group(1), re.S)
    assert [re.sub(r"<[^>]+>", "", c).strip() for c in cells[2:]] == [
        "products",
        "full_sync",
        "success",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]


def test_filters_by_date_range_feed_operation_and_status(
    client: TestClient, ctx: Context, seeded: list[dict[str, Any]]
) -> None:
    login(client, ctx)
    day = utcnow().date() - timedelta(days=2)
    query = f"from={day}&to={day}&feed=prices&operation=partial_sync&status=success"
    page = client.get(f"/dashboard?{query}")
    expected = [
        r
        for r in seeded
        if r["started_at"].date() == day
        and (r["feed"], r["operation"], r["status"]) == ("prices", "partial_sync", "success")
    ]
    assert RUNS_PER_PAGE < len(expected) < 2 * RUNS_PER_PAGE
    assert run_ids(page.text) == by_start(expected)[:RUNS_PER_PAGE]
    assert f"{len(expected)} runs · page 1 of 2" in page.text
    assert run_ids(client.get(f"/dashboard?{query}&page=2").text) == by_start(expected)[50:]
    # The form shows the state the URL holds, and the sort links keep it.
    # (datetime-local inputs, in UTC here; the page's script shows them in the viewer's zone)
    after = day + timedelta(days=1)
    assert f'name="from" value="{day}T00:00" data-utc="{day}T00:00:00Z"' in page.text
    assert f'name="to" value="{after}T00:00" data-utc="{after}T00:00:00Z"' in page.text
    assert '<option value="prices" selected>' in page.text
    assert '<option value="partial_sync" selected>' in page.text
    sort_link = re.search(r'id="sort-end" href="([^"]+)"', page.text)
    assert sort_link is not None
    link = sort_link.group(1).replace("&amp;", "&")
    assert "feed=prices" in link and "status=success" in link and "sort=end" in link
    assert run_ids(client.get(link).text) == by_end(expected)[:RUNS_PER_PAGE]


def test_sorting_by_end_puts_running_runs_first_then_latest_finished(
    client: TestClient, ctx: Context, seeded: list[dict[str, Any]]
) -> None:
    login(client, ctx)
    recent = since_default(seeded)
    assert by_end(recent) != by_start(recent)
    page = client.get("/dashboard?sort=end")
    shown = run_ids(page.text)
    assert shown == by_end(recent)[:RUNS_PER_PAGE]
    assert shown[0] == "r00005"  # the newest running run
    second = client.get("/dashboard?sort=end&page=2")
    assert run_ids(second.text) == by_end(recent)[RUNS_PER_PAGE : 2 * RUNS_PER_PAGE]


def test_bad_filter_values_are_explained_and_ignored(
    client: TestClient, ctx: Context, seeded: list[dict[str, Any]]
) -> None:
    login(client, ctx)
    page = client.get("/dashboard?from=yesterday&feed=nope&status=done&sort=size&page=x")
    assert page.status_code == 200
    for sentence in (
        "from 'yesterday' is not a date; use YYYY-MM-DD, or a date and time (YYYY-MM-DDTHH:MM, "
        "UTC unless it carries an offset such as Z or +01:00).",
        "feed 'nope' is not known; accepted values are",
        "status 'done' is not known; accepted values are running, success,",
        "sort 'size' is not accepted; sort by 'start' or 'end'.",
        "page 'x' is not a page number; showing page 1.",
    ):
        assert sentence in html.unescape(page.text)
    assert run_ids(page.text) == by_start(since_default(seeded))[:RUNS_PER_PAGE]
    edges = client.get("/dashboard?to=9999-12-31&page=%C2%B2&resynced=%C2%B2&cleared=1")
    assert edges.status_code == 200
    assert "page '²' is not a page number" in html.unescape(edges.text)
    assert run_ids(edges.text) == run_ids(page.text)
    far = client.get("/dashboard?page=99999999999999999999999")
    assert far.status_code == 200 and run_ids(far.text) == run_ids(page.text)


def test_parse_filters_defaults_and_query_round_trip() -> None:
    today = datetime(2026, 11, 23).date()
    filters, problems = parse_filters({}, ["products"], today)
    assert (filters.since, filters.until, filters.sort, filters.page, problems) == (
        datetime(2026, 11, 18),
        None,
        "start",
        1,
        [],
    )
    for since, until in (
        (datetime(2026, 11, 23), datetime(2026, 11, 24)),  # whole days: from=…&to=… (included)
        (datetime(2026, 11, 23, 8, 30), datetime(2026, 11, 23, 17, 45)),  # moments, UTC
    ):
        state = RunFilters(since, until, "products")
        query = state.query(page=4)
        again, problems = parse_filters(
            dict(re.findall(r"([^&=]+)=([^&]*)", query.replace("%3A", ":"))), ["products"], today
        )
        assert again == RunFilters(since, until, "products", page=4) and problems == []
    assert (
        "from=2026-11-23&to=2026-11-23"
        in RunFilters(datetime(2026, 11, 23), datetime(2026, 11, 24)).query()
    )
    reversed_range, problems = parse_filters({"from": "2026-11-20", "to": "2026-11-10"}, [], today)
    assert reversed_range.until is None and "ends (2026-11-10) before it starts" in problems[0]


def test_a_moment_with_an_offset_is_the_viewers_time_converted_to_utc() -> None:
    today = datetime(2026, 11, 23).date()
    # What the page's script sends for 09:30 and 18:00 in Paris (UTC+1), and without the script.
    filters, problems = parse_filters(
        {"from": "2026-11-23T09:30+01:00", "to": "2026-11-23T17:00:00Z"}, [], today
    )
    assert (filters.since, filters.until, problems) == (
        datetime(2026, 11, 23, 8, 30),
        datetime(2026, 11, 23, 17, 0),
        [],
    )
    naive, _ = parse_filters({"from": "2026-11-23T09:30"}, [], today)
    assert naive.since == datetime(2026, 11, 23, 9, 30)  # no offset: UTC


# --- error cards and resync, against the real destination ------------------------------------


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(
        db_url, destination.url, tmp_path, books=130, batch_size=50, collect_batch_size=65
    )
    yield ctx
    ctx.close()


@pytest.fixture
def lib_client(lib: Context) -> Iterator[TestClient]:
    with TestClient(make_app(lib)) as test_client:
        login(test_client, lib)
        yield test_client


def current(lib: Context) -> dict[str, str]:
    with lib.db.connect() as conn:
        return {
            e["item_id"]: e["category"]
            for e in as_dicts(read_model.list_errors(conn, feed="books"))
        }


def test_error_cards_count_errors_and_affected_records_per_category(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-2", "book-3"], code="MISSING_ASSOCIATION", message="no author")
    destination.reject(["book-5"], code="INVALID_VALUE", message="bad title")
    indexer.reindex(lib, lib.registry.get("books"))
    destination.clear_faults()
    destination.reject(["book-2"], code="MISSING_ASSOCIATION", message="still no author")
    # book-2 fails again: a new error row of the same record, which supersedes the first.
    with lib.db.connect() as conn:
        first = {
            e["item_id"]: e["id"] for e in as_dicts(read_model.list_errors(conn, feed="books"))
        }
    resync_errors(lib, [first["book-2"]])

    page = lib_client.get("/dashboard")
    assert page.status_code == 200
    cards = re.findall(
        r'<article class="card" id="card-(\w+)">.*?class="errors-count">([\d,]+)</span>.*?'
        r'class="records-count">([\d,]+)</span>',
        page.text,
        re.S,
    )
    assert cards == [("associations", "2", "2"), ("property_values", "1", "1")]
    assert len(error_ids(page.text, "associations")) == 2
    assert "still no author" in page.text and "bad title" in page.text
    assert 'href="/dashboard/errors.csv?category=associations"' in page.text
    filtered = lib_client.get("/dashboard?feed=books&status=error")
    assert "card-associations" in filtered.text  # the run filters leave the cards alone


def test_resync_of_selected_errors_sends_them_and_clears_them(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-3", "book-5", "book-7"], code="INVALID_VALUE")
    indexer.reindex(lib, lib.registry.get("books"))
    destination.clear_faults()
    destination.reset()
    page = lib_client.get("/dashboard?feed=books")
    by_item = dict(
        re.findall(r'name="error_id" value="(\d+)" aria-label="Select ([\w-]+)"', page.text)
    )
    by_item = {item: error_id for error_id, item in by_item.items()}
    answer = lib_client.post(
        "/dashboard/resync",
        data={
            "csrf_token": csrf(page.text),
            "back": "feed=books&sort=end",
            "error_id": [by_item["book-3"], by_item["book-7"]],
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard?feed=books&sort=end&resynced=2&cleared=2"
    assert destination.accepted_ids("books") == {"book-3", "book-7"}
    assert current(lib) == {"book-5": "property_values"}
    after = lib_client.get(answer.headers["location"])
    assert "Resynced 2 errors: 2 cleared." in after.text
    assert "resync_errors" in after.text  # the resync is a run of its own in the table


def test_resync_of_more_than_100_errors_is_refused_with_a_message(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject([f"book-{n}" for n in range(1, 102)], code="DUPLICATE_VALUE")
    indexer.reindex(lib, lib.registry.get("books"))
    destination.clear_faults()
    destination.reset()
    page = lib_client.get("/dashboard")
    ids = error_ids(page.text, "duplicates")
    assert len(ids) == 101
    answer = lib_client.post(
        "/dashboard/resync", data={"csrf_token": csrf(page.text), "error_id": ids}
    )
    assert answer.status_code == 400
    assert "101 errors were selected, but at most 100 can be resynced at once" in answer.text
    assert destination.requests == [] and len(current(lib)) == 101

    done = lib_client.post(
        "/dashboard/resync",
        data={"csrf_token": csrf(page.text), "error_id": ids[:100]},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "cleared=100" in done.headers["location"]
    assert len(current(lib)) == 1


def test_resync_needs_the_form_token_and_a_selection(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-4"], code="INVALID_VALUE")
    indexer.reindex(lib, lib.registry.get("books"))
    destination.reset()
    page = lib_client.get("/dashboard")
    [error_id] = error_ids(page.text, "property_values")
    for token in ("", "0" * 32):
        forged = lib_client.post(
            "/dashboard/resync", data={"csrf_token": token, "error_id": [error_id]}
        )
        assert forged.status_code == 403 and "Form expired" in forged.text
    odd = lib_client.post(
        "/dashboard/resync", data={"csrf_token": csrf(page.text), "error_id": ["²"]}
    )
    assert odd.status_code == 400 and "something other than sync error ids" in odd.text
    nothing = lib_client.post("/dashboard/resync", data={"csrf_token": csrf(page.text)})
    assert nothing.status_code == 400 and "No error was selected" in nothing.text
    assert destination.requests == [] and current(lib) == {"book-4": "property_values"}
    lib_client.cookies.clear()
    anonymous = lib_client.post(
        "/dashboard/resync", data={"error_id": [error_id]}, follow_redirects=False
    )
    assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/dashboard/login")


def test_export_csv_shows_a_formula_in_an_error_message_as_text(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-8"], code="INVALID_ENUM_VALUE", message="=1+1")
    indexer.reindex(lib, lib.registry.get("books"))
    answer = lib_client.get("/dashboard/errors.csv")
    assert "books,book-8,picklists,INVALID_ENUM_VALUE,'=1+1," in answer.text.splitlines()[1]


def test_export_csv_link_works_with_the_session_cookie_which_the_api_does_not_take(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-8"], code="INVALID_ENUM_VALUE", message="colour 'mauve'")
    destination.reject(["book-9"], code="MISSING_ASSOCIATION")
    indexer.reindex(lib, lib.registry.get("books"))
    page = lib_client.get("/dashboard")
    link = re.search(r'href="(/dashboard/errors\.csv\?category=picklists)"', page.text)
    assert link is not None
    answer = lib_client.get(link.group(1))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.splitlines()
    assert lines[0].startswith("feed,item_id,category,code,message,")
    assert (
        len(lines) == 2 and "books,book-8,picklists,INVALID_ENUM_VALUE,colour 'mauve'," in lines[1]
    )
    # The cookie is not an API key: the API answers 401 to reads and writes alike.
    [error_id] = error_ids(page.text, "picklists")
    write = lib_client.post("/sync/errors/resync", json={"error_ids": [int(error_id)]})
    assert write.status_code == 401
    assert lib_client.get("/sync/errors.csv?category=picklists").status_code == 401
    assert lib_client.get(f"/cdi/integrations/{uuid.uuid4()}/job_sync_status").status_code == 401
    lib_client.cookies.clear()
    anonymous = lib_client.get(link.group(1), follow_redirects=False)
    assert (anonymous.status_code, anonymous.headers["location"]) == (303, "/dashboard/login")


def test_the_usage_gauge_shows_calls_of_the_last_24_hours_against_allocation_and_limit(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    destination.daily_limit = 1000
    lib = library_context(
        db_url,
        destination.url,
        tmp_path,
        books=130,
        batch_size=50,
        collect_batch_size=50,
        EXPORT_DAILY_CALL_ALLOCATION="40",
    )
    try:
        indexer.reindex(lib, lib.registry.get("books"))
        calls = len(destination.requests)
        assert calls == 3  # 130 books in batches of 50
        with TestClient(make_app(lib)) as client:
            login(client, lib)
            page = client.get("/dashboard")
        gauge = re.search(r'<section id="usage".*?</section>', page.text, re.S)
        assert gauge is not None
        text = " ".join(re.sub(r"<[^>]+>", " ", gauge.group(0)).split())
        assert f"{destination.url}: 3 calls of this worker's allocation of 40" in text
        assert "the destination allows 1,000 a day" in text and "8% of 40 used" in text
        assert 'max="40"' in gauge.group(0) and 'value="3"' in gauge.group(0)
    finally:
        lib.close()


def test_a_file_destination_makes_no_api_calls(client: TestClient, ctx: Context) -> None:
    login(client, ctx)
    page = client.get("/dashboard")
    assert "a file destination; its writes are not API calls." in page.text


def test_an_error_that_fails_again_is_reported_as_still_failing(
    lib: Context, lib_client: TestClient, destination: DestinationServer
) -> None:
    destination.reject(["book-3", "book-5"], code="INVALID_VALUE")
    indexer.reindex(lib, lib.registry.get("books"))
    destination.clear_faults()
    destination.reject(["book-5"], code="PERMISSION_DENIED", message="read-only record")
    page = lib_client.get("/dashboard")
    answer = lib_client.post(
        "/dashboard/resync",
        data={"csrf_token": csrf(page.text), "error_id": error_ids(page.text, "property_values")},
    )
    assert answer.status_code == 200  # after the redirect
    assert "Resynced 2 errors: 1 cleared, 1 still failing." in answer.text
    assert current(lib) == {"book-5": "permissions"}
    assert "card-property_values" not in answer.text and "read-only record" in answer.text
