"""The dashboard's trends page: items synced, failed and skipped per hour over 24 hours and per
day over 5 days, for all feeds and for each, and the API calls per hour over the 24-hour window
of each destination, as server-side SVG charts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from feeds.clock import utcnow
from feeds.export import budget
from feeds.history import trends
from feeds.history.integrations import public_destination
from worker.api.auth import get_context
from worker.api.dashboard.charts import stacked_bars
from worker.api.dashboard.pages import page_response, usage_charts
from worker.api.dashboard.routes import admin_session
from worker.api.session import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("/trends", response_class=HTMLResponse)
def trends_page(request: Request) -> Response:
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    now = utcnow()
    charts = []
    with ctx.db.connect() as conn:
        for window, step_title in (
            (trends.LAST_24_HOURS, "per hour, last 24 hours"),
            (trends.LAST_5_DAYS, "per day, last 5 days"),
        ):
            series = trends.per_feed(conn, window, now)
            starts = window.buckets(now)
            every = trends.combined(list(series.values()), starts)
            charts.append(
                {
                    "title": f"All feeds, {step_title}",
                    "id": f"all-{window.step.value}",
                    "svg": stacked_bars(every, window.step, f"All feeds, {step_title}"),
                    "feeds": [
                        (
                            name,
                            sum(b.synced for b in s),
                            sum(b.failed for b in s),
                            sum(b.skipped for b in s),
                            stacked_bars(s, window.step, f"{name}, {step_title}"),
                        )
                        for name, s in series.items()
                    ],
                }
            )
    drawn = usage_charts(ctx, budget.usage_by_destination(ctx))
    calls = [(public_destination(destination), svg) for destination, svg in drawn.items()]
    return page_response(
        request, "trends.html", {"session": session, "charts": charts, "now": now, "calls": calls}
    )
