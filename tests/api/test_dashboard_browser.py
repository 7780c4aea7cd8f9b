"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium), driven by Playwright,
against a real uvicorn server on a real database whose runs and errors come from syncing to the
real test destination. Leaves a screenshot in artifacts/dashboard.png.

Playwright rather than Selenium: one PyPI package drives the system Chromium over CDP (no
chromedriver to keep at the browser's exact version), and its locators wait for navigation and
rendering by themselves, so the test has no sleeps. `playwright install` is never run.

Without Chromium or Playwright the test skips with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

from feeds.clock import utcnow
from feeds.context import Context
from feeds.pipeline import indexer
from feeds.state.tables import sync_runs
from tests.conftest import IN_CI, library_context
from tests.notify.test_notifications import WebhookReceiver
from worker.api import apikeys
from worker.api.app import create_app
from worker.testing.destination_server import DestinationServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def require_browser() -> None:
    """Skip (or, under CI=true, fail) when the browser or its driver is missing."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing (pip install -e '.[test]')"
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true the browser test must run.")
    pytest.skip(reason)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """A real uvicorn server on a free local port, in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def seed_history(ctx: Context, now: datetime) -> None:
    """Older runs of the feed (the last four days), so the table has pages, sorts and filters."""
    operations = ["partial_sync", "resend_failed", "full_sync", "reindex_invalid"]
    statuses = ["success", "success", "partial", "error"]
    rows: list[dict[str, Any]] = []
    for n in range(120):
        started = now - timedelta(hours=1, minutes=45 * n)
        running = n == 7
        rows.append(
            {
                "id": f"seed{n:04d}",
                "feed": "books",
                "operation": operations[n % 4],
                "status": "running" if running else statuses[(n // 4) % 4],
                "started_at": started,
                "finished_at": None if running else started + timedelta(minutes=(n * 13) % 120),
                "new": n % 9,
                "updated": n % 4,
                "deleted": n % 2,
                "failed": n % 3,
                "skipped": n % 5,
            }
        )
    with ctx.db.begin() as conn:
        conn.execute(sync_runs.insert(), rows)


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    require_browser()
    destination.daily_limit = 1000
    ctx = library_context(
        db_url,
        destination.url,
        tmp_path,
        books=40,
        batch_size=10,
        collect_batch_size=20,
        EXPORT_DAILY_CALL_ALLOCATION="20",
    )
    yield ctx
    ctx.close()


def reload_until(page: Any, done: Any, timeout_s: float = 20) -> None:
    """Reload the page until `done()` holds: for work the dashboard queued in the background."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{page.url} did not show the queued work done")
        time.sleep(0.2)
        page.reload()


def column(page: Any, index: int) -> list[str]:
    """The text of one column of the runs table (0 = start)."""
    return [
        cell.strip()
        for cell in page.locator(f"table.runs tbody tr td:nth-child({index + 1})").all_inner_texts()
    ]


def test_admin_logs_in_filters_sorts_resyncs_and_exports_in_a_real_browser(
    lib: Context, destination: DestinationServer
) -> None:
    from playwright.sync_api import expect, sync_playwright

    books = lib.registry.get("books")
    # Real runs and errors: a full sync the destination partly rejects, then a partial sync.
    destination.reject(
        ["book-3", "book-4", "book-5"], code="MISSING_ASSOCIATION", message="no author"
    )
    destination.reject(["book-7"], code="INVALID_VALUE", message="title too long")
    indexer.reindex(lib, books)
    with lib.source.begin() as conn:
        conn.execute(text("UPDATE books SET title = 'Changed' WHERE book_no = 2"))
        conn.execute(text("DELETE FROM books WHERE book_no = 40"))
    indexer.update_all_views(lib)
    seed_history(lib, utcnow())
    _, admin_key = apikeys.create_key(lib.db, "browser admin", ["sync.admin"])

    with serving(create_app(lib.settings)) as base, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = context.new_page()

            # Login: the dashboard sends an anonymous browser to the form; a wrong key is explained.
            page.goto(f"{base}/dashboard")
            expect(page).to_have_url(f"{base}/dashboard/login")
            page.fill("#api_key", "fsk_wrong")
            page.click("button[type=submit]")
            expect(page.locator("#message")).to_contain_text("That API key is not valid")
            page.fill("#api_key", admin_key)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/dashboard")
            expect(page.locator("h1")).to_have_text("Sync status")
            expect(page.locator("header .who")).to_contain_text("browser admin")
            cookie = next(c for c in context.cookies() if c["name"] == "feedsync_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert admin_key not in cookie["value"]

            # The table: newest first, the two real runs on top, 122 runs over 3 pages.
            expect(page.locator("#run-count")).to_have_text("122 runs · page 1 of 3")
            assert column(page, 3)[:2] == ["partial_sync", "full_sync"]
            assert column(page, 4)[:2] == ["success", "partial"]
            assert column(page, 8)[:2] == ["0", "4"]  # failed
            page.click("#page-next")
            expect(page.locator("#run-count")).to_have_text("122 runs · page 2 of 3")
            assert "page=2" in page.url

            # Filter by operation and status: a GET form, the URL keeps the state.
            page.goto(f"{base}/dashboard")
            page.select_option("select[name=operation]", "partial_sync")
            page.select_option("select[name=status]", "success")
            page.click("#filters button[type=submit]")
            expect(page).to_have_url(re.compile(r"operation=partial_sync&status=success"))
            operations, statuses = column(page, 3), column(page, 4)
            # seeded: partial_sync is n % 4 == 0, success is (n // 4) % 4 in (0, 1): 16 of them
            assert len(operations) == 17
            assert set(operations) == {"partial_sync"} and set(statuses) == {"success"}
            expect(page.locator("select[name=operation]")).to_have_value("partial_sync")

            # Sort by end time: running runs first, then the latest finished; the filters stay.
            page.click("#sort-end")
            expect(page).to_have_url(re.compile(r"operation=partial_sync.*sort=end"))
            ends = column(page, 1)
            assert ends == sorted(ends, reverse=True) and len(ends) == 17
            page.goto(f"{base}/dashboard?sort=end")
            ends = column(page, 1)
            assert ends[0] == "—"  # the running run
            assert ends[1:] == sorted(ends[1:], reverse=True)
            starts = column(page, 0)
            assert starts != sorted(starts, reverse=True)  # the order really is by end

            # Error cards: counts, the category's resolution text, the affected records.
            page.goto(f"{base}/dashboard")
            card = page.locator("#card-associations")
            expect(card.locator(".errors-count")).to_have_text("3")
            expect(card.locator(".records-count")).to_have_text("3")
            expect(card.locator(".resolution")).to_contain_text("refer to another record")
            expect(page.locator("#card-property_values .errors-count")).to_have_text("1")

            # "Select all" ticks every record of the card, and only of that card.
            card.locator(".select-all").check()
            assert card.locator("input[name=error_id]:checked").count() == 3
            assert page.locator("#card-property_values input[name=error_id]:checked").count() == 0
            card.locator(".select-all").uncheck()

            # Resync two selected errors: the destination now accepts them, so they are cleared.
            destination.clear_faults()
            calls = len(destination.requests)
            destination.reset()
            card.get_by_label("Select book-3").check()
            card.get_by_label("Select book-5").check()
            card.locator("button.resync").click()
            expect(page.locator("#message")).to_have_text("Resynced 2 errors: 2 cleared.")
            assert destination.accepted_ids("books") == {"book-3", "book-5"}
            expect(page.locator("#card-associations .errors-count")).to_have_text("1")
            expect(page.locator("#card-associations td.record")).to_have_text(["book-4"])
            assert column(page, 3)[0] == "resync_errors"

            # The API-usage gauge: the real calls of the three syncs against the allocation.
            gauge = page.locator("#usage .gauge")
            expect(gauge.locator(".usage-calls")).to_have_text(
                str(calls + len(destination.requests))
            )
            expect(gauge.locator(".usage-allocation")).to_have_text("20")
            expect(gauge.locator(".usage-limit")).to_have_text("1,000")
            # The same calls per hour, as a server-side SVG chart under the gauge.
            total = calls + len(destination.requests)
            expect(gauge.locator("svg.calls-chart")).to_have_attribute(
                "aria-label",
                re.compile(rf"last 24 hours: {total} calls, at most {total} in an hour$"),
            )

            # Export CSV (authenticated by the session cookie): the current errors.
            with page.expect_download() as download_info:
                page.click("#export-csv")
            download = download_info.value
            assert download.suggested_filename.startswith("sync-errors-")
            exported = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
            assert sorted((r["item_id"], r["category"], r["code"]) for r in exported) == [
                ("book-4", "associations", "MISSING_ASSOCIATION"),
                ("book-7", "property_values", "INVALID_VALUE"),
            ]
            assert {r["resolved"].lower() for r in exported} == {"false"}

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

            # Resync every error of a category of a feed: queued, run in the background, cleared.
            destination.reset()
            page.get_by_role("button", name="Resync all 1 property values error of books").click()
            expect(page.locator("#message")).to_have_text(
                "A resync of the 1 current property_values error of books was queued: "
                "1 resync_errors run of at most 100; they show in Sync runs as they start."
            )
            reload_until(page, lambda: page.locator("#card-property_values").count() == 0)
            assert destination.accepted_ids("books") == {"book-7"}

            # Settings for every worker: the allocation (a bad value says what is accepted), the
            # notifications, and a test notification to a real webhook; labelled fields.
            allocation_field = page.get_by_label("Calls per 24 hours (empty: unlimited)")
            expect(allocation_field).to_have_value("20")
            allocation_field.fill("twenty")
            page.get_by_role("button", name="Save allocation").click()
            expect(page.locator("#message")).to_contain_text(
                "The daily API-call allocation 'twenty' is not accepted; accepted: a whole number"
            )
            page.get_by_label("Calls per 24 hours (empty: unlimited)").fill("5000")
            page.get_by_role("button", name="Save allocation").click()
            expect(page.locator("#message")).to_have_text(
                "The daily API-call allocation is now 5,000 calls a day, for every worker."
            )
            expect(page.locator("#usage .usage-allocation")).to_have_text("5,000")
            with WebhookReceiver() as hook:
                page.get_by_label("Send", exact=True).select_option("daily")
                page.get_by_label("Webhook URL (JSON POSTs)").fill(hook.url)
                page.get_by_role("button", name="Save notifications").click()
                expect(page.locator("#message")).to_have_text(
                    "Notification settings saved: daily to " + hook.url.split("/")[2] + "."
                )
                page.get_by_role("button", name="Send a test notification").click()
                expect(page.locator("#message")).to_contain_text("A test notification was sent")
                assert [body["type"] for body in hook.bodies] == ["test"]
            # The settings fields take the keyboard focus ring too.
            page.focus("#allocation")
            assert (
                page.eval_on_selector("#allocation", "e => getComputedStyle(e).outlineStyle")
                != "none"
            )
            page.locator("#settings").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)

            # Log out: the session is gone.
            page.click("header button.link")
            expect(page).to_have_url(f"{base}/dashboard/login")
            page.goto(f"{base}/dashboard")
            expect(page).to_have_url(f"{base}/dashboard/login")
        finally:
            browser.close()


def test_operator_drills_from_feed_health_to_items_runs_and_an_item_in_a_real_browser(
    lib: Context, destination: DestinationServer
) -> None:
    from playwright.sync_api import expect, sync_playwright

    books = lib.registry.get("books")
    destination.reject(["book-3", "book-4"], code="MISSING_ASSOCIATION", message="no author")
    destination.omit(["book-9"])  # left out of the answer: retryable, status 2
    indexer.reindex(lib, books)
    destination.clear_faults()
    with lib.source.begin() as conn:  # a change still waiting in the changelog: backlog 1
        conn.execute(text("UPDATE books SET title = 'Pending' WHERE book_no = 1"))
    _, admin_key = apikeys.create_key(lib.db, "operator", ["sync.admin"])

    with serving(create_app(lib.settings)) as base, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            page.goto(f"{base}/dashboard/login")
            page.fill("#api_key", admin_key)
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{base}/dashboard")

            # Feed health first: amber for the rejections, the counts per item status, backlog 1.
            row = page.locator("#health tr[data-feed=books]")
            expect(row.locator(".health-badge")).to_have_text("amber")
            expect(row.locator(".reasons")).to_contain_text("2 items rejected by the destination")
            expect(row.locator(".indexer-status")).to_have_text("Ready")
            expect(row.locator(".backlog")).to_have_text("1")
            expect(row.locator(".count-200")).to_have_text("37")
            expect(row.locator(".count-2")).to_have_text("1")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-health.png"), full_page=True)

            # A count is a link to those items.
            row.get_by_label("2 rejected items of books").click()
            expect(page).to_have_url(f"{base}/dashboard/feeds/books/items?status=400")
            expect(page.locator("h1")).to_contain_text("items in status 400 (rejected)")
            expect(page.locator("table.items td.record a")).to_have_text(["book-3", "book-4"])

            # From an item to the item lookup, and from there to the run that recorded its error.
            page.locator("table.items td.record a").first.click()
            report = page.locator("section.item-report")
            expect(report.locator(".item-status")).to_have_text("400 (rejected)")
            expect(report.locator(".item-error")).to_contain_text("MISSING_ASSOCIATION: no author")
            expect(report.locator(".document-missing")).to_contain_text("Not kept")
            page.screenshot(path=str(ARTIFACTS / "item-lookup.png"), full_page=True)
            report.locator(".item-runs a").first.click()
            expect(page.locator("h1")).to_have_text("Run of books: full_sync")
            expect(page.locator("#run-status")).to_have_text("partial")
            expect(page.locator("#run-counters td")).to_have_text(
                ["40", "0", "0", "3", "0", "37", "3"]
            )
            expect(page.locator("tr[data-category=associations] td")).to_have_text(
                ["Associations", "2", "2"]
            )
            with page.expect_download() as download_info:
                page.click("#run-csv")
            exported = list(
                csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text()))
            )
            assert sorted(r["item_id"] for r in exported) == ["book-3", "book-4", "book-9"]
            page.screenshot(path=str(ARTIFACTS / "run-detail.png"), full_page=True)

            # Back on the dashboard, a run row opens the same page; the search box finds by key.
            page.goto(f"{base}/dashboard")
            page.locator("table.runs a.run-link").first.click()
            expect(page.locator("#run-status")).to_have_text("partial")
            page.goto(f"{base}/dashboard")
            page.get_by_label("Find an item (id or entity key, any feed)").fill("9")
            page.keyboard.press("Enter")
            expect(page.locator("section.item-report h2")).to_contain_text("book-9")
            expect(page.locator(".item-status")).to_have_text("2 (retryable)")
            # Trends: server-side SVG charts, all feeds and each, with a text summary.
            page.goto(f"{base}/dashboard")
            page.click("#trends-link")
            chart = page.locator("#trend-all-hour svg.chart").first
            expect(chart).to_have_attribute(
                "aria-label", "All feeds, per hour, last 24 hours: 37 synced, 3 failed, 0 skipped"
            )
            expect(page.locator("#trend-all-day figure[data-feed=books]")).to_be_visible()
            expect(page.locator("#trend-calls svg.calls-chart")).to_have_attribute(
                "aria-label", re.compile(r"last 24 hours: 4 calls, at most 4 in an hour$")
            )
            page.screenshot(path=str(ARTIFACTS / "trends.png"), full_page=True)

            # Suspend the feed from its health row: the row says so, the audit list names the key.
            page.goto(f"{base}/dashboard")
            row = page.locator("#health tr[data-feed=books]")
            row.get_by_label("Action on books").select_option("suspend")
            row.get_by_label("Apply the action to books").click()
            expect(page.locator("#message")).to_have_text(
                "Index status for Indexer 'Book Feed' was changed from 'valid' to 'suspended'."
            )
            expect(row.locator(".indexer-status")).to_have_text("Suspended")
            expect(row.locator(".reasons")).to_contain_text("The indexer is suspended")
            page.screenshot(path=str(ARTIFACTS / "feed-suspended.png"), full_page=True)

            # A full resync from the health row: every item is sent again, in the background.
            destination.reset()
            row.get_by_label("Action on books").select_option("resume")
            row.get_by_label("Apply the action to books").click()
            row.get_by_label("Action on books").select_option("resync")
            row.get_by_label("Apply the action to books").click()
            expect(page.locator("#message")).to_contain_text(
                "A full resync of Book Feed was queued"
            )
            reload_until(page, lambda: len(destination.accepted_ids("books")) == 40)
            reload_until(
                page, lambda: column(page, 3)[0] == "full_sync" and column(page, 4)[0] == "success"
            )
            page.click("#audit-link")
            expect(page.locator("table.audit tbody tr")).to_have_count(3)
            expect(page.locator("table.audit .key-name").first).to_contain_text("operator")
            expect(page.locator("table.audit .action")).to_have_text(
                ["resync", "resume", "suspend"]
            )

            # Keyboard focus is visible: the search field takes the focus ring.
            page.goto(f"{base}/dashboard")
            page.focus("#lookup-q")
            outline = page.eval_on_selector("#lookup-q", "e => getComputedStyle(e).outlineStyle")
            assert outline != "none"
        finally:
            browser.close()


def test_times_show_in_the_viewers_time_zone_and_filters_take_a_local_time_of_day(
    lib: Context,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    now = utcnow().replace(microsecond=0)
    seed_history(lib, now)  # runs started 1 h 45 min apart, the newest 1 h ago
    _, admin_key = apikeys.create_key(lib.db, "viewer", ["sync.admin"])
    kolkata = timedelta(hours=5, minutes=30)  # Asia/Kolkata: UTC+05:30 all year

    with serving(create_app(lib.settings)) as base, sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata"
            )
            page = context.new_page()
            page.goto(f"{base}/dashboard/login")
            page.fill("#api_key", admin_key)
            page.keyboard.press("Enter")
            expect(page.locator(".tz-note")).to_have_text(  # ICU may say the zone's old name
                re.compile(r"Times are in your time zone \(Asia/(Kolkata|Calcutta)\); hover a time")
            )
            newest = now - timedelta(hours=1)
            first = page.locator("table.runs tbody tr").first.locator("td").first.locator("time")
            expect(first).to_have_text(f"{newest + kolkata:%Y-%m-%d %H:%M:%S}")
            expect(first).to_have_attribute("title", f"{newest:%Y-%m-%d %H:%M:%S} UTC")

            # "From" a local time of day: sent as the UTC moment, the runs from then on shown.
            fourth = now - timedelta(hours=1, minutes=135)  # the seeded run n=3
            local_from = (fourth + kolkata).replace(second=0)
            page.get_by_label("Started from").fill(f"{local_from:%Y-%m-%dT%H:%M}")
            page.click("#filters button[type=submit]")
            utc_from = local_from - kolkata
            expect(page).to_have_url(
                re.compile(rf"from={utc_from:%Y-%m-%dT%H}%3A{utc_from:%M}%3A00Z")
            )
            expect(page.locator("#run-count")).to_have_text("4 runs")
            # The form shows the filter back in local time.
            expect(page.get_by_label("Started from")).to_have_value(f"{local_from:%Y-%m-%dT%H:%M}")
            # An end typed into the empty "until" is converted too: runs before it, local time.
            third = now - timedelta(hours=1, minutes=90)  # the seeded run n=2
            local_until = (third + kolkata).replace(second=0)
            page.get_by_label("until", exact=True).fill(f"{local_until:%Y-%m-%dT%H:%M}")
            page.click("#filters button[type=submit]")
            utc_until = local_until - kolkata
            expect(page).to_have_url(
                re.compile(rf"to={utc_until:%Y-%m-%dT%H}%3A{utc_until:%M}%3A00Z")
            )
            expect(page.locator("#run-count")).to_have_text("1 run")
            page.screenshot(path=str(ARTIFACTS / "local-times.png"), full_page=True)
        finally:
            browser.close()


def test_error_details_group_by_field_list_held_back_records_and_link_them(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    require_browser()
    lib = library_context(
        db_url,
        destination.url,
        tmp_path,
        books=20,
        extra='record_url = "https://shop.example/admin/book/{entity}"\n'
        'destination_url = "https://crm.example/objects/books/{id}"\n',
    )
    try:
        destination.reject(
            ["book-1", "book-2"], "INVALID_ENUM_VALUE", field="genre", value="poetry"
        )
        destination.reject(["book-3"], "TYPE_MISMATCH", "Property 'pages' expects a number")
        destination.reject(["book-5", "book-6"], "MISSING_ASSOCIATION", field="author", value="9")
        indexer.reindex(lib, lib.registry.get("books"))
        _, admin_key = apikeys.create_key(lib.db, "details", ["sync.admin"])
        with serving(create_app(lib.settings)) as base, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{base}/dashboard/login")
                page.fill("#api_key", admin_key)
                page.keyboard.press("Enter")
                picklists = page.locator("#card-picklists table.by-field")
                expect(picklists.locator("caption")).to_have_text(
                    "By field, as the destination named it"
                )
                expect(picklists.locator("tbody tr td")).to_have_text(["genre", "2", "2", "poetry"])
                expect(
                    page.locator("#card-property_mappings table.by-field td.field")
                ).to_have_text(["pages"])
                held = page.locator("#card-associations .held-back li.group")
                expect(held).to_have_count(1)
                expect(held).to_contain_text("author 9 is missing at the destination")
                expect(held).to_contain_text("holds back 2 records")
                expect(held.locator("a")).to_have_count(2)
                source = page.get_by_label("book-5 in the source application")
                expect(source).to_have_attribute("href", "https://shop.example/admin/book/5")
                expect(page.get_by_label("book-5 in the destination")).to_have_attribute(
                    "href", "https://crm.example/objects/books/book-5"
                )
                page.screenshot(path=str(ARTIFACTS / "error-details.png"), full_page=True)
                # A held-back record opens the item lookup, which links the record too.
                held.locator("a", has_text="book-6").click()
                expect(page.locator(".item-report .source-link")).to_have_attribute(
                    "href", "https://shop.example/admin/book/6"
                )
            finally:
                browser.close()
    finally:
        lib.close()
