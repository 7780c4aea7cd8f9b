"""Trends: items synced, failed and skipped per hour (24 h) and per day (5 days), per feed, from
the runs' counters, on SQLite and PostgreSQL; the SVG charts; `GET /sync/trends`; the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from feeds.clock import utcnow
from feeds.context import Context
from feeds.history import trends
from feeds.history.trends import Bucket, Step
from feeds.state.tables import sync_runs
from tests.api.test_dashboard import login
from tests.conftest import bearer, make_api_key
from worker.api.app import create_app
from worker.api.dashboard.charts import stacked_bars

NOW = datetime(2026, 11, 24, 12, 30)


def add_run(
    ctx: Context, run_id: str, feed: str, started: datetime, counts: tuple[int, int, int]
) -> None:
    synced, failed, skipped = counts
    with ctx.db.begin() as conn:
        conn.execute(
            sync_runs.insert().values(
                id=run_id,
                feed=feed,
                operation="partial_sync",
                status="success",
                started_at=started,
                finished_at=started,
                rows_synced=synced,
                failed=failed,
                skipped=skipped,
            )
        )


def test_windows_end_with_the_bucket_that_holds_now() -> None:
    hours = trends.LAST_24_HOURS.buckets(NOW)
    assert (len(hours), hours[0], hours[-1]) == (
        24,
        datetime(2026, 11, 23, 13),
        datetime(2026, 11, 24, 12),
    )
    days = trends.LAST_5_DAYS.buckets(NOW)
    assert (len(days), days[0], days[-1]) == (5, datetime(2026, 11, 20), datetime(2026, 11, 24))


def test_runs_are_summed_per_feed_in_the_bucket_they_started_in(ctx: Context) -> None:
    add_run(ctx, "a", "products", NOW.replace(minute=5), (10, 1, 2))
    add_run(ctx, "b", "products", NOW.replace(minute=25), (5, 0, 1))
    add_run(ctx, "c", "prices", NOW - timedelta(hours=3), (7, 2, 0))
    add_run(ctx, "old", "prices", NOW - timedelta(days=2), (100, 0, 0))  # outside 24 h, inside 5 d
    with ctx.db.connect() as conn:
        hourly = trends.per_feed(conn, trends.LAST_24_HOURS, NOW)
        daily = trends.per_feed(conn, trends.LAST_5_DAYS, NOW)
        only = trends.per_feed(conn, trends.LAST_24_HOURS, NOW, "prices")
    assert list(hourly) == ["prices", "products"]
    assert hourly["products"][-1] == Bucket(datetime(2026, 11, 24, 12), 15, 1, 3)
    assert hourly["prices"][-4] == Bucket(datetime(2026, 11, 24, 9), 7, 2, 0)
    assert sum(b.total for b in hourly["prices"]) == 9
    assert [b.synced for b in daily["prices"]] == [0, 0, 100, 0, 7]
    assert list(only) == ["prices"]
    every = trends.combined(list(hourly.values()), trends.LAST_24_HOURS.buckets(NOW))
    assert (every[-1].synced, every[-4].synced, len(every)) == (15, 7, 24)


def test_the_chart_is_svg_with_a_bar_per_bucket_and_a_summary_for_screen_readers() -> None:
    buckets = [
        Bucket(datetime(2026, 11, 24, h), synced=h, failed=1 if h == 3 else 0) for h in range(4)
    ]
    svg = str(stacked_bars(buckets, Step.HOUR, "All feeds"))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert 'aria-label="All feeds: 6 synced, 1 failed, 0 skipped"' in svg
    assert svg.count('<g class="bar"') == 4 and svg.count('class="failed"') == 1
    assert "<title>2026-11-24 03:00 UTC: 3 synced, 1 failed, 0 skipped</title>" in svg
    assert "<script" not in svg and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    empty = str(stacked_bars([Bucket(datetime(2026, 11, 24))], Step.DAY, "Nothing"))
    assert "<rect" not in empty


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        ctx: Context = test_client.app.state.ctx  # type: ignore[attr-defined]
        test_client.headers.update(bearer(make_api_key(ctx, "sync.admin")))
        yield test_client


def test_trends_endpoint_gives_every_bucket_and_refuses_bad_input(client: TestClient) -> None:
    ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
    add_run(ctx, "a", "products", utcnow(), (4, 1, 0))
    body = client.get("/sync/trends").json()
    assert (body["window"], body["step"], body["feed"], len(body["results"])) == (
        "24h",
        "hour",
        None,
        24,
    )
    assert body["results"][-1]["synced"] == 4 and body["results"][-1]["start"].endswith(
        ":00:00.000Z"
    )
    days = client.get("/sync/trends", params={"window": "5d", "feed": "prices"}).json()
    assert (days["step"], len(days["results"]), sum(r["synced"] for r in days["results"])) == (
        "day",
        5,
        0,
    )
    for params, message in (
        ({"window": "7d"}, "The query parameter 'window' = '7d' is not accepted"),
        ({"feed": "nope"}, "feed 'nope' is not a feed; accepted feeds: "),
        ({"step": "hour"}, "Unknown query parameter 'step'; accepted: feed, window."),
    ):
        answer = client.get("/sync/trends", params=params)
        assert answer.status_code == 400 and answer.json()["message"].startswith(message)
    no_key = client.get("/sync/trends", headers={"Authorization": ""})
    assert no_key.status_code == 401


def test_trends_page_draws_all_feeds_and_each_feed(ctx: Context) -> None:
    add_run(ctx, "a", "products", utcnow(), (4, 1, 0))
    add_run(ctx, "b", "prices", utcnow() - timedelta(days=1), (9, 0, 0))
    with TestClient(create_app(ctx.settings)) as client:
        assert client.get("/dashboard/trends", follow_redirects=False).status_code == 303
        login(client, ctx)
        assert 'href="/dashboard/trends"' in client.get("/dashboard").text
        page = client.get("/dashboard/trends")
    assert page.status_code == 200
    hourly = re.search(r'<section id="trend-all-hour".*?</section>', page.text, re.S)
    daily = re.search(r'<section id="trend-all-day".*?</section>', page.text, re.S)
    assert hourly and daily
    assert re.findall(r'<figure data-feed="(\w+)">', hourly.group(0)) == ["products"]
    assert re.findall(r'<figure data-feed="(\w+)">', daily.group(0)) == ["prices", "products"]
    assert (
        'aria-label="All feeds, per day, last 5 days: 13 synced, 1 failed, 0 skipped"'
        in daily.group(0)
    )
