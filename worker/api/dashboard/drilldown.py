"""The dashboard's drill-down pages: one run (counters, message, duration, its errors by
category), the items of one feed in one item status, and an item looked up by id or entity key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from feeds.history import read_model, runs
from feeds.history.categories import help_for
from feeds.history.health import STATUS_KEYS, status_of_key
from feeds.history.lookup import lookup_item
from feeds.history.record_links import links, url_templates
from feeds.state import item_lookup
from worker.api.auth import get_context
from worker.api.dashboard.filters import number
from worker.api.dashboard.pages import message_page, page_response
from worker.api.dashboard.routes import admin_session
from worker.api.session import Session

router = APIRouter(prefix="/dashboard", include_in_schema=False)

ITEMS_PER_PAGE = 100
RUN_ERRORS_SHOWN = 200
MAX_PAGE = 100_000


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> Response:
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    runs.close_abandoned(ctx.db)
    with ctx.db.connect() as conn:
        run = read_model.get_run(conn, run_id[:32])
        if run is None:
            message = f"No sync run {run_id!r}: it never existed or was removed after the retention period."
            return message_page(request, "Run not found", message, session, 404)
        categories = read_model.run_error_categories(conn, run.id)
        errors, total = read_model.errors_page(
            conn, run_id=run.id, include_resolved=True, limit=RUN_ERRORS_SHOWN
        )
    return page_response(
        request,
        "run.html",
        {
            "session": session,
            "run": run,
            "categories": [(c, help_for(c.category).title) for c in categories],
            "errors": errors,
            "total": total,
            "csv_url": f"/dashboard/errors.csv?run_id={run.id}&include_resolved=1",
        },
    )


@router.get("/feeds/{feed}/items", response_class=HTMLResponse)
def items_page(
    request: Request, feed: str, status: str = "", page: Annotated[str, Query()] = "1"
) -> Response:
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    if feed not in ctx.registry.names():
        message = f"{feed!r} is not a feed; the feeds are {', '.join(ctx.registry.names())}."
        return message_page(request, "Unknown feed", message, session, 404)
    try:
        wanted = status_of_key(status)
    except ValueError:
        message = f"{status!r} is not an item status; accepted: {', '.join(STATUS_KEYS)}."
        return message_page(request, "Unknown item status", message, session, 400)
    current = min(number(page) or 1, MAX_PAGE)
    with ctx.db.connect() as conn:
        rows, total = item_lookup.items_page(
            conn, feed, wanted, limit=ITEMS_PER_PAGE, offset=(current - 1) * ITEMS_PER_PAGE
        )
    pages = max(1, -(-total // ITEMS_PER_PAGE))
    return page_response(
        request,
        "items.html",
        {
            "session": session,
            "feed": feed,
            "status": wanted,
            "key": status,
            "items": rows,
            "total": total,
            "page": current,
            "pages": pages,
        },
    )


@router.get("/items", response_class=HTMLResponse)
def lookup_page(request: Request, q: str = "") -> Response:
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    text = q.strip()[:255]
    reports = lookup_item(ctx, text) if text else []
    templates = url_templates(ctx)
    record_links = [links(*templates[r.item.feed], r.item.id, r.item.entity_key) for r in reports]
    return page_response(
        request,
        "lookup.html",
        {"session": session, "q": text, "reports": reports, "record_links": record_links},
    )
