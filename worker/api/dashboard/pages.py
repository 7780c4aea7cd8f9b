"""The dashboard's pages: Jinja2 templates, with the headers every page carries."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from feeds.clock import utcnow
from feeds.context import Context
from feeds.export import allocation, budget
from feeds.history.feed_health import feed_health
from feeds.history.health import ITEM_STATUS_LABEL, ITEM_STATUSES, age, lag_text, status_key
from feeds.history.integrations import public_destination
from feeds.history.record_links import url_templates
from feeds.notify.settings import Frequency, current_settings
from feeds.pipeline.resync_errors import MAX_RESYNC_ERRORS
from feeds.state.runtime_settings import CACHE_S
from worker.api.apikeys import Permission
from worker.api.dashboard.charts import call_bars
from worker.api.dashboard.filters import input_value, number, parse_filters
from worker.api.dashboard.queries import error_cards, run_page
from worker.api.filters import OPERATIONS, STATUSES
from worker.api.session import Session

templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")

ADMIN_PERMISSION = Permission.SYNC_ADMIN
FREQUENCY_LABEL = {
    Frequency.OFF: "Off",
    Frequency.IMMEDIATELY: "Immediately (each new error category or failed run)",
    Frequency.DAILY: "Daily digest",
    Frequency.WEEKLY: "Weekly digest",
}


def utc(moment: datetime | None, precision: str = "second", suffix: bool = False) -> Markup:
    """A UTC time as `<time datetime="…Z">`, which the page's script shows in the viewer's time
    zone (UTC in its tooltip); "—" for none. `suffix` writes " UTC" for a browser without it."""
    if moment is None:
        return Markup("—")
    text = moment.strftime("%Y-%m-%d %H:%M" if precision == "minute" else "%Y-%m-%d %H:%M:%S")
    return Markup('<time datetime="{}Z" data-precision="{}" title="{} UTC">{}{}</time>').format(
        moment.isoformat(timespec="seconds"), precision, text, text, " UTC" if suffix else ""
    )


# What every template may use: UTC times, the item statuses in their order, their URL keys and
# names, ages.
SHARED: dict[str, Any] = {
    "utc": utc,
    "input_value": input_value,
    "item_statuses": ITEM_STATUSES,
    "status_key": status_key,
    "status_label": ITEM_STATUS_LABEL,
    "age": age,
    "lag_text": lag_text,
}


def render_dashboard(
    request: Request,
    ctx: Context,
    session: Session,
    params: Mapping[str, str],
    notices: Sequence[str] = (),
    problems: Sequence[str] = (),
    status_code: int = 200,
) -> Response:
    """The sync-status page for the filters in `params`, with notices and problems on top."""
    feeds = ctx.registry.names()
    now = utcnow()
    filters, filter_problems = parse_filters(params, feeds, now.date())
    # Closes the runs of dead processes first; the item counts are kept between pages.
    health = feed_health(ctx, now, counts=request.app.state.status_counts)
    with ctx.db.connect() as conn:
        page = run_page(conn, filters)
        cards = error_cards(conn, filters.feed, url_templates(ctx))
    usage = budget.usage_by_destination(ctx)
    return page_response(
        request,
        "dashboard.html",
        {
            "session": session,
            "now": now,
            "health": health,
            "filters": filters,
            "page": page,
            "cards": cards,
            "feeds": feeds,
            "operations": OPERATIONS,
            "statuses": STATUSES,
            "notices": list(notices),
            "problems": [*problems, *filter_problems],
            "usage": usage,
            "usage_charts": usage_charts(ctx, usage),
            "shown_url": public_destination,
            "max_resync": MAX_RESYNC_ERRORS,
            "csv_url": "/dashboard/errors.csv",
            "allocation": allocation.current(ctx),
            "settings_cache_s": int(CACHE_S),
            "notifications": current_settings(ctx),
            "frequencies": FREQUENCY_LABEL,
        },
        status_code=status_code,
    )


def usage_charts(ctx: Context, usage: Sequence[budget.Usage]) -> dict[str, Markup]:
    """The API calls per hour over the 24-hour window of each destination that counts them."""
    return {
        u.destination: call_bars(
            budget.calls_per_hour(ctx, u.destination),
            f"API calls per hour to {public_destination(u.destination)}, last 24 hours",
        )
        for u in usage
        if u.counted
    }


def page_response(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, template, {**SHARED, **context, "nonce": nonce}, status_code=status_code
    )
    # The pages hold live data and a form token: never cached, never framed (no clickjacking),
    # and only the page's own script runs.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def message_page(
    request: Request, title: str, message: str, session: Session | None, status_code: int
) -> Response:
    context = {"title": title, "message": message, "session": session}
    return page_response(request, "message.html", context, status_code=status_code)


def forbidden(request: Request, key_name: str, session: Session | None = None) -> Response:
    """403: the key is fine but lacks sync.admin (at login, or since it was changed)."""
    return page_response(
        request,
        "message.html",
        {
            "title": "Permission needed",
            "message": f"The API key {key_name!r} does not hold the {ADMIN_PERMISSION} permission "
            "the dashboard needs. Log in with a key created with "
            f"`python -m worker apikey:create --permission {ADMIN_PERMISSION}`.",
            "session": session,
            "login_link": True,
        },
        status_code=403,
    )


def resync_notice(resynced: str, cleared: str) -> list[str]:
    """The outcome of a resync, shown once on the page its form redirects to."""
    done, clean = number(resynced), number(cleared)
    if done is None or clean is None:
        return []
    failing = done - clean
    text = f"Resynced {done} error{'s' if done != 1 else ''}: {clean} cleared"
    return [f"{text}, {failing} still failing." if failing > 0 else f"{text}."]
