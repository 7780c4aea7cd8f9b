"""The API calls per hour over the 24-hour window: counted by the budget, drawn as server-side SVG
on the dashboard and the trends page, and in `GET /sync/usage`; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.context import Context
from feeds.export import budget
from feeds.export.budget import CallBudget, calls_per_hour, usage
from feeds.pipeline import indexer
from tests.api.test_dashboard import login
from tests.conftest import bearer, library_context, make_api_key
from worker.api.app import create_app
from worker.api.dashboard.charts import call_bars
from worker.testing.destination_server import DestinationServer

DEST = "http://dest.example"
NOW = datetime(2026, 12, 1, 10, 30)


def calls_at(ctx: Context, monkeypatch: pytest.MonkeyPatch, moment: datetime, n: int) -> None:
    monkeypatch.setattr(budget, "clock", lambda: moment)
    gate = CallBudget(ctx.db, DEST, allocation=None)
    for _ in range(n):
        assert gate.acquire() is None


def test_calls_per_hour_add_up_to_the_window_and_fall_in_their_hours(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls_at(ctx, monkeypatch, NOW - timedelta(hours=25), 7)  # out of the window
    calls_at(ctx, monkeypatch, NOW - timedelta(hours=23, minutes=55), 2)  # 10:35 yesterday: in
    calls_at(ctx, monkeypatch, NOW - timedelta(hours=2), 3)  # 08:30
    calls_at(ctx, monkeypatch, NOW - timedelta(minutes=1), 4)  # 10:29
    hours = calls_per_hour(ctx, DEST, NOW)
    monkeypatch.setattr(budget, "clock", lambda: NOW)
    assert len(hours) == 25  # 10:00 yesterday (its last 29 minutes) to 10:00 today
    assert hours[0] == (datetime(2026, 11, 30, 10), 2)
    assert dict(hours)[datetime(2026, 12, 1, 8)] == 3
    assert hours[-1] == (datetime(2026, 12, 1, 10), 4)
    assert sum(calls for _, calls in hours) == usage(ctx, DEST).calls_24h == 9


def test_the_chart_has_a_bar_per_hour_with_its_figure_and_a_summary() -> None:
    hours = [
        (datetime(2026, 12, 1, h), c)
        for h, c in zip(range(24), [0] * 20 + [5, 0, 12, 3], strict=True)
    ]
    svg = str(call_bars(hours, "API calls per hour to x"))
    assert 'aria-label="API calls per hour to x: 20 calls, at most 12 in an hour"' in svg
    assert svg.count('<g class="bar"') == 24 and svg.count("<rect") == 3
    assert "<title>2026-12-01 22:00 UTC: 12 calls</title>" in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


def test_the_real_calls_of_a_sync_show_in_the_api_the_dashboard_and_the_trends(
    lib: Context, destination: DestinationServer
) -> None:
    indexer.reindex(lib, lib.registry.get("books"))  # 12 books, 3 a call
    calls = len(destination.requests)
    assert calls == 4
    with TestClient(create_app(lib.settings)) as client:
        ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
        key = bearer(make_api_key(ctx, "sync.admin"))
        [current] = client.get("/sync/usage", headers=key).json()["results"]
        per_hour = current["calls_per_hour"]
        assert len(per_hour) in (24, 25) and per_hour[-1]["calls"] == calls
        assert sum(h["calls"] for h in per_hour) == current["calls_24h"] == calls
        login(client, ctx)
        page = client.get("/dashboard").text
        summary = re.search(r'<svg class="chart calls-chart"[^>]*aria-label="([^"]+)"', page)
        assert summary and summary.group(1).endswith(
            f"last 24 hours: {calls} calls, at most {calls} in an hour"
        )
        trends = client.get("/dashboard/trends").text
        assert 'id="trend-calls"' in trends and trends.count("calls-chart") == 1
