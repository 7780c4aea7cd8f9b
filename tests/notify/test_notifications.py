"""Notifications (SPEC §6): immediate notices once per new error category or failed run, daily and
weekly digests once per period, delivered to a real local webhook receiver; settings from the TOML
file or changed at runtime — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.context import open_context
from config.settings import load_settings
from feeds import definitions
from feeds.clock import utcnow
from feeds.context import Context
from feeds.definitions import ItemStatus
from feeds.errors import ConfigError
from feeds.export.protocol import ItemResult
from feeds.history import runs
from feeds.notify.messages import Period, category_changes, digest_body, digest_period, notice_body
from feeds.notify.settings import (
    Frequency,
    NotificationConfig,
    check_settings,
    current_settings,
    update_settings,
)
from feeds.notify.webhook import send_due
from feeds.pipeline import indexer
from feeds.pipeline.resync import ResyncRequest, resync
from feeds.state import tables
from tests.conftest import library_context
from worker.testing.destination_server import DestinationServer

ROOT = Path(__file__).resolve().parents[2]


class WebhookReceiver:
    """A real HTTP endpoint recording the JSON bodies POSTed to it; it can fail the next requests."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_left = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests += 1
                    failing = receiver.fail_left > 0
                    if failing:
                        receiver.fail_left -= 1
                    else:
                        assert self.headers.get("Content-Type") == "application/json"
                        receiver.bodies.append(json.loads(body))
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/feedsync-secret-token"

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for b in self.bodies if b["type"] == "notice" for e in b["events"]]

    def digests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.bodies if b["type"] == "digest"]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


def reindex(ctx: Context) -> None:
    indexer.reindex(ctx, ctx.registry.get("books"))


def resend(ctx: Context, *numbers: int) -> None:
    ids = tuple(f"book-{n}" for n in numbers)
    resync(ctx, ctx.registry.get("books"), ResyncRequest(by_ids=ids))


def immediately(ctx: Context, webhook: WebhookReceiver) -> None:
    update_settings(ctx, frequency="immediately", webhook_url=webhook.url)
    send_due(ctx)  # the job's first run: nothing before it is notified as a failed run


# --- immediate notices -------------------------------------------------------------------------


def test_a_new_error_category_is_notified_once_not_once_per_item(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    immediately(lib, webhook)
    destination.reject({"book-2", "book-3"}, code="INVALID_VALUE", message="price < 0")
    reindex(lib)
    report = send_due(lib)
    assert (report.recorded, report.events_sent, report.posts, report.pending) == (1, 1, 1, 0)
    [event] = webhook.events()
    assert (
        event["event"],
        event["feed"],
        event["category"],
        event["errors"],
        event["records"],
    ) == (
        "error_category",
        "books",
        "property_values",
        2,
        2,
    )
    assert event["example"]["code"] == "INVALID_VALUE" and event["resolution"]
    assert "new property_values errors in feed books" in webhook.bodies[0]["text"]

    destination.reject({"book-4"}, code="INVALID_VALUE", message="price < 0")
    resend(lib, 4, 5)  # one more item of the same category: nothing new to say
    send_due(lib)
    send_due(lib)
    assert len(webhook.events()) == 1


def test_a_failed_run_is_notified_with_its_new_category_in_one_post(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    reindex(lib)
    immediately(lib, webhook)
    destination.reject({"book-5"}, code="DUPLICATE_VALUE", message="sku taken")
    resend(lib, 5)  # its only item fails: the run ends `error`
    send_due(lib)
    [body] = webhook.bodies
    kinds = sorted(
        (e["event"], e["feed"], e.get("status") or e.get("category")) for e in body["events"]
    )
    assert kinds == [("error_category", "books", "duplicates"), ("run_failed", "books", "error")]
    failed = next(e for e in body["events"] if e["event"] == "run_failed")
    assert (failed["operation"], failed["failed"], failed["rows_synced"]) == ("full_sync", 1, 0)
    send_due(lib)
    assert len(webhook.bodies) == 1


def test_retryable_failures_alone_are_not_a_new_category_notice(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    reindex(lib)
    immediately(lib, webhook)
    destination.omit({"book-1"})  # missing from the results: retryable (`transient`)
    resend(lib, 1, 2)
    send_due(lib)
    assert webhook.bodies == []  # the run is partial, not failed; transient is not notified


def test_a_category_that_cleared_and_came_back_is_new_again(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    immediately(lib, webhook)
    destination.reject({"book-2"}, code="INVALID_ENUM_VALUE", message="colour")
    reindex(lib)
    send_due(lib)
    destination.clear_faults()
    resend(lib, 2)  # accepted: its error is resolved, the category closes
    send_due(lib)
    destination.reject({"book-3"}, code="INVALID_ENUM_VALUE", message="colour")
    resend(lib, 3, 4)
    send_due(lib)
    assert [e["category"] for e in webhook.events()] == ["picklists", "picklists"]


def test_two_workers_running_the_job_at_once_send_a_notice_once(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    immediately(lib, webhook)
    destination.reject({"book-2"}, code="MISSING_ASSOCIATION", message="no category")
    reindex(lib)
    workers = [open_context(lib.settings) for _ in range(3)]
    start = threading.Barrier(len(workers))
    failures: list[BaseException] = []

    def job(ctx: Context) -> None:
        start.wait()
        try:
            send_due(ctx)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=job, args=(ctx,)) for ctx in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for ctx in workers:
        ctx.close()
    assert failures == []
    assert [e["category"] for e in webhook.events()] == ["associations"]


def test_a_failing_webhook_keeps_the_notice_and_gets_it_at_the_next_run(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    immediately(lib, webhook)
    destination.reject({"book-2"}, code="TYPE_MISMATCH", message="weight is text")
    reindex(lib)
    webhook.fail_left = 1
    report = send_due(lib)
    assert (report.events_sent, report.pending, report.failures) == (
        0,
        1,
        ["HTTP 500 from the webhook"],
    )
    with lib.db.connect() as conn:
        [row] = conn.execute(select(tables.notices)).mappings().all()
    assert (row["sent_at"], row["attempts"], row["last_error"]) == (
        None,
        1,
        "HTTP 500 from the webhook",
    )
    report = send_due(lib)
    assert (report.events_sent, report.pending, report.failures) == (1, 0, [])
    assert [e["category"] for e in webhook.events()] == ["property_mappings"]
    assert webhook.requests == 2


def test_a_webhook_that_is_down_gets_one_attempt_per_job_run(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    immediately(lib, webhook)
    destination.reject({"book-2"}, code="VALIDATION_RULE", message="x")
    reindex(lib)
    webhook.fail_left = 10
    send_due(lib)  # the event fails once
    update_settings(lib, frequency="daily", webhook_url=webhook.url)
    tomorrow = datetime.combine(utcnow().date() + timedelta(days=1), time())
    report = send_due(lib, now=tomorrow + timedelta(minutes=5))  # the event, then a digest due
    assert (webhook.requests, report.pending, len(report.failures)) == (2, 2, 1)
    webhook.fail_left = 0
    report = send_due(lib, now=tomorrow + timedelta(minutes=10))
    assert (report.events_sent, report.digests_sent, report.pending) == (1, 1, 0)
    assert [b["type"] for b in webhook.bodies] == ["notice", "digest"]


def test_an_unreachable_webhook_is_logged_and_retried(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    update_settings(lib, frequency="immediately", webhook_url="http://127.0.0.1:9/nobody-listens")
    send_due(lib)
    destination.reject({"book-2"}, code="PERMISSION_DENIED", message="read-only field")
    reindex(lib)
    report = send_due(lib)
    assert report.pending == 1 and report.failures and "ConnectError" in report.failures[0]
    update_settings(lib, frequency="immediately", webhook_url=webhook.url)
    send_due(lib)
    assert [e["category"] for e in webhook.events()] == ["permissions"]


def test_nothing_is_sent_when_notifications_are_off(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    update_settings(lib, frequency="off", webhook_url=webhook.url)
    send_due(lib)
    destination.reject({"book-2"}, code="INVALID_VALUE", message="x")
    reindex(lib)
    assert send_due(lib).recorded == 0
    # Switched on later: the category open before is not replayed.
    update_settings(lib, frequency="immediately", webhook_url=webhook.url)
    send_due(lib)
    assert webhook.requests == 0


def test_a_frequency_without_a_webhook_in_the_toml_file_is_refused_at_start(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    # Nothing could be delivered; a runtime change (PUT) sets frequency and webhook together.
    extra = '[notifications]\nfrequency = "immediately"\n'
    with pytest.raises(ConfigError, match=r"notifications\.webhook_url is not set, but frequency"):
        library_context(db_url, destination.url, tmp_path, extra=extra)


# --- digests -----------------------------------------------------------------------------------


def midnight_after(moment: datetime, days: int = 1) -> datetime:
    return datetime.combine(moment.date() + timedelta(days=days), time())


def test_a_daily_digest_counts_runs_and_errors_per_feed_once_per_day(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    update_settings(lib, frequency="daily", webhook_url=webhook.url)
    destination.reject({"book-2", "book-3"}, code="INVALID_VALUE", message="x")
    reindex(lib)  # partial: 10 synced, 2 failed
    destination.fail_next(1, status=400)
    resend(lib, 7)  # error: the whole batch refused
    today = utcnow()
    tomorrow = midnight_after(today)
    send_due(lib, now=tomorrow + timedelta(minutes=5))
    [digest] = webhook.digests()
    assert digest["frequency"] == "daily"
    assert digest["period"] == {
        "start": f"{today:%Y-%m-%d}T00:00:00Z",
        "end": f"{tomorrow:%Y-%m-%d}T00:00:00Z",
    }
    [books] = digest["feeds"]
    assert books == {
        "feed": "books",
        "runs": 2,
        "runs_by_status": {"error": 1, "partial": 1},
        "rows_synced": 10,
        "rows_failed": 3,
        "errors": 3,
        "errors_by_category": {"other": 1, "property_values": 2},
    }
    assert digest["text"].startswith(f"Feedsync daily digest {today:%Y-%m-%d}: 2 runs")
    # Later the same day, and from another worker: nothing more.
    send_due(lib, now=tomorrow + timedelta(hours=3))
    other = open_context(lib.settings)
    send_due(other, now=tomorrow + timedelta(hours=4))
    other.close()
    assert len(webhook.digests()) == 1
    # The next day has its own digest (nothing happened in it).
    send_due(lib, now=tomorrow + timedelta(days=1, minutes=5))
    digests = webhook.digests()
    assert len(digests) == 2 and digests[1]["totals"]["runs"] == 0


def test_a_weekly_digest_covers_the_week_even_past_the_run_retention(
    lib: Context, destination: DestinationServer, webhook: WebhookReceiver
) -> None:
    destination.reject({"book-2"}, code="DUPLICATE_VALUE", message="x")
    reindex(lib)
    today = utcnow()
    send_due(lib, now=midnight_after(today) + timedelta(minutes=5))  # off: only the statistics
    removed_runs, _ = runs.remove_history(lib.db, 1, now=today + timedelta(days=30))
    assert removed_runs == 1
    update_settings(lib, frequency="weekly", webhook_url=webhook.url)
    next_monday = midnight_after(today, days=7 - today.weekday())
    send_due(lib, now=next_monday + timedelta(minutes=5))
    send_due(lib, now=next_monday + timedelta(days=2))
    [digest] = webhook.digests()
    assert digest["period"]["start"] == f"{next_monday - timedelta(days=7):%Y-%m-%d}T00:00:00Z"
    assert digest["totals"]["runs_by_status"] == {"partial": 1}
    assert digest["totals"]["errors_by_category"] == {"duplicates": 1}
    assert digest["feeds"][0]["rows_synced"] == 11


# --- settings ----------------------------------------------------------------------------------


def test_settings_come_from_the_toml_file_until_changed_at_runtime(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(
        db_url,
        destination.url,
        tmp_path,
        extra='[notifications]\nfrequency = "daily"\nwebhook_url = "https://hooks.example.com/a"\n',
    )
    other = open_context(ctx.settings)
    try:
        assert current_settings(ctx) == NotificationConfig(
            Frequency.DAILY, "https://hooks.example.com/a", "config"
        )
        changed = update_settings(other, frequency="weekly", webhook_url="https://h.example/b")
        seen = current_settings(ctx)
        assert (seen.frequency, seen.webhook_url, seen.source) == (
            Frequency.WEEKLY,
            "https://h.example/b",
            "database",
        )
        assert seen == changed
        with pytest.raises(ConfigError):
            update_settings(ctx, frequency="hourly", webhook_url=None)
        assert current_settings(ctx) == seen  # a refused change changes nothing
    finally:
        other.close()
        ctx.close()


@pytest.mark.parametrize(
    ("frequency", "url", "message"),
    [
        (
            "hourly",
            None,
            "Notification frequency 'hourly' is not accepted; accepted values are 'off', "
            "'immediately', 'daily', 'weekly'.",
        ),
        (
            "daily",
            "ftp://x",
            "Webhook URL 'ftp://x' is not accepted; accepted: an http(s):// URL with a host, "
            "such as https://hooks.example.com/feedsync.",
        ),
        (
            "weekly",
            "https://hooks.example.com:99999/feedsync",
            "Webhook URL 'https://hooks.example.com:99999/feedsync' is not accepted; accepted: "
            "an http(s):// URL with a host, such as https://hooks.example.com/feedsync.",
        ),
        (
            "daily",
            "http://[::1/feedsync",
            "Webhook URL 'http://[::1/feedsync' is not accepted; accepted: an http(s):// URL "
            "with a host, such as https://hooks.example.com/feedsync.",
        ),
        (
            "immediately",
            None,
            "Notification frequency 'immediately' needs a webhook URL to deliver to; give "
            "webhook_url, or set the frequency to 'off'.",
        ),
    ],
)
def test_a_bad_setting_is_refused_with_one_sentence(
    frequency: str, url: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        check_settings(frequency, url)
    assert str(refused.value) == message


def test_off_needs_no_webhook_and_blank_means_none() -> None:
    assert check_settings("off", "  ") == (Frequency.OFF, None)
    assert check_settings("daily", "https://h.example/x") == (
        Frequency.DAILY,
        "https://h.example/x",
    )


def test_a_bad_webhook_url_in_the_toml_file_is_refused_at_start(tmp_path: Path) -> None:
    from config.settings import read_config_file

    config = tmp_path / "bad.toml"
    config.write_text('[notifications]\nfrequency = "daily"\nwebhook_url = "hooks.example.com"\n')
    with pytest.raises(ConfigError, match=r"notifications\.webhook_url = 'hooks\.example\.com'"):
        read_config_file(str(config))


# --- the cron job ------------------------------------------------------------------------------


def test_cron_run_sync_error_notifications_posts_to_the_webhook(
    cli_env: dict[str, str], webhook: WebhookReceiver, tmp_path: Path
) -> None:
    config = tmp_path / "feedsync.toml"
    config.write_text(
        f'[notifications]\nfrequency = "immediately"\nwebhook_url = "{webhook.url}"\n'
    )
    env = {**os.environ, **cli_env, "FEEDSYNC_CONFIG": str(config)}
    ctx = open_context(load_settings(env))
    runs.start_run(ctx.db, "r1", "products", definitions.Operation.PARTIAL_SYNC, "test-owner")
    with ctx.db.begin() as conn:
        runs.record_errors(
            conn, "r1", "products", [ItemResult("p-1", ItemStatus.REJECTED, "VALIDATION_RULE", "x")]
        )
    ctx.close()
    done = subprocess.run(
        [sys.executable, "-m", "worker", "cron:run", "sync_error_notifications"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "notifications (immediately): 1 new; sent 1 events and 0 digests in 1 posts" in done.stdout
    )
    assert [e["category"] for e in webhook.events()] == ["custom_code"]
    assert "feedsync-secret-token" not in done.stderr  # the webhook's path is not logged


# --- pure rules --------------------------------------------------------------------------------


def test_the_digest_period_is_the_last_complete_day_or_week() -> None:
    wednesday = datetime(2026, 11, 25, 8, 30)
    assert digest_period(Frequency.DAILY, wednesday) == Period(
        datetime(2026, 11, 24), datetime(2026, 11, 25)
    )
    assert digest_period(Frequency.WEEKLY, wednesday) == Period(
        datetime(2026, 11, 16), datetime(2026, 11, 23)
    )
    assert digest_period(Frequency.WEEKLY, datetime(2026, 11, 23, 0, 5)) == Period(
        datetime(2026, 11, 16), datetime(2026, 11, 23)
    )
    assert digest_period(Frequency.IMMEDIATELY, wednesday) is None


def test_new_and_cleared_categories() -> None:
    opened, closed = category_changes(
        {("books", "picklists"), ("books", "other")}, {("books", "other"), ("cds", "duplicates")}
    )
    assert (opened, closed) == ({("books", "picklists")}, {("cds", "duplicates")})


def test_the_notice_text_names_each_event() -> None:
    body = notice_body(
        [
            {
                "event": "error_category",
                "feed": "books",
                "category": "picklists",
                "errors": 1,
                "records": 1,
            },
            {"event": "run_failed", "feed": "cds", "operation": "partial_sync", "status": "error"},
        ],
        datetime(2026, 11, 23, 12, 0),
    )
    assert body["text"] == (
        "Feedsync: new picklists errors in feed books (1 error on 1 record); "
        "partial_sync run of feed cds ended error."
    )
    assert (body["type"], body["sent_at"], len(body["events"])) == (
        "notice",
        "2026-11-23T12:00:00Z",
        2,
    )


def test_a_digest_adds_up_feeds_and_categories() -> None:
    stats = {
        "books": {
            "runs": {"success": 5, "partial": 1},
            "rows_synced": 50,
            "rows_failed": 2,
            "errors": {"other": 2},
        },
        "cds": {
            "runs": {"error": 1},
            "rows_synced": 0,
            "rows_failed": 3,
            "errors": {"other": 1, "picklists": 2},
        },
    }
    period = Period(datetime(2026, 11, 16), datetime(2026, 11, 23))
    body = digest_body(Frequency.WEEKLY, period, stats, datetime(2026, 11, 23, 0, 5))
    assert body["totals"] == {
        "runs": 7,
        "runs_by_status": {"error": 1, "partial": 1, "success": 5},
        "rows_synced": 50,
        "rows_failed": 5,
        "errors": 5,
        "errors_by_category": {"other": 3, "picklists": 2},
    }
    assert [f["feed"] for f in body["feeds"]] == ["books", "cds"]
    assert body["text"] == (
        "Feedsync weekly digest 2026-11-16 to 2026-11-22: 7 runs (1 error, 1 partial), "
        "50 items synced, 5 errors (other 3, picklists 2)."
    )
