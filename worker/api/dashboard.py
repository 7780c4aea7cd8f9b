"""The admin dashboard at /dashboard (SPEC §7): sync runs, errors by category, resync, CSV, API usage.

Server-rendered with Jinja2, no JavaScript framework. A browser logs in once with an API key that
holds `sync.admin` and then carries a signed session cookie (key id, expiry, HMAC), never the key.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Connection

from feeds import budget, runs
from feeds.apikeys import Permission
from feeds.context import Context
from feeds.error_categories import help_for
from feeds.errors import FeedsyncError
from feeds.export.protocol import ErrorCategory
from feeds.integrations import public_destination
from feeds.locks import LockedError
from feeds.resync import MAX_RESYNC_ERRORS, resync_errors
from feeds.runs import Operation, RunFilter, RunSort, RunStatus
from feeds.store import utcnow
from worker.api import session as sessions
from worker.api.admin.sync_errors import csv_download
from worker.api.auth import authenticate, get_context
from worker.api.session import Session, current_session

log = structlog.get_logger("worker.api.dashboard")

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

ADMIN_PERMISSION = Permission.SYNC_ADMIN
DEFAULT_DAYS = 5
RUNS_PER_PAGE = 50
MAX_PAGE = 1_000_000
RECORDS_PER_CARD = 200
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 256 * 1024


# --- filters: parsed from the query string, one sentence per bad value -------------------------


@dataclass(frozen=True)
class RunFilters:
    """What the sync-status table shows: runs started in [since, until), filtered, sorted, one page."""

    since: date
    until: date | None = None
    feed: str | None = None
    operation: str | None = None
    status: str | None = None
    sort: str = "start"
    page: int = 1

    def query(self, **changes: object) -> str:
        """This state as a query string (the URL keeps it), with some values changed."""
        values: dict[str, object] = {
            "from": self.since.isoformat(),
            "to": self.until.isoformat() if self.until else None,
            "feed": self.feed,
            "operation": self.operation,
            "status": self.status,
            "sort": self.sort,
            "page": self.page,
        }
        values.update(changes)
        if values["page"] == 1:
            del values["page"]
        return urlencode({k: v for k, v in values.items() if v is not None and v != ""})


def parse_filters(
    params: Mapping[str, str], feeds: Sequence[str], today: date
) -> tuple[RunFilters, list[str]]:
    """Filters from the query string; a bad value is dropped and explained, never a crash."""
    problems: list[str] = []
    since = today - timedelta(days=DEFAULT_DAYS)
    until: date | None = None
    if params.get("from"):
        since = _date(params["from"], "from", problems) or since
    if params.get("to"):
        until = _date(params["to"], "to", problems)
    if until is not None and until < since:
        problems.append(
            f"The date range ends ({until}) before it starts ({since}); showing runs from {since}."
        )
        until = None
    choices = {
        "feed": list(feeds),
        "operation": [o.value for o in Operation],
        "status": [s.value for s in RunStatus],
    }
    chosen: dict[str, str | None] = {}
    for name, accepted in choices.items():
        value = params.get(name) or None
        if value is not None and value not in accepted:
            problems.append(
                f"{name} {value!r} is not known; accepted values are {', '.join(accepted)}."
            )
            value = None
        chosen[name] = value
    sort = params.get("sort") or RunSort.START.value
    if sort not in [s.value for s in RunSort]:
        problems.append(f"sort {sort!r} is not accepted; sort by 'start' or 'end'.")
        sort = "start"
    page_text = params.get("page") or "1"
    page = number(page_text) or 1
    if page_text != str(page) or page > MAX_PAGE:
        page = 1
        problems.append(f"page {page_text!r} is not a page number; showing page 1.")
    filters = RunFilters(
        since, until, chosen["feed"], chosen["operation"], chosen["status"], sort, page
    )
    return filters, problems


def number(text: str) -> int | None:
    """A whole number written in ASCII digits (up to 18 of them), else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _date(text: str, name: str, problems: list[str]) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} {text!r} is not a date; use YYYY-MM-DD.")
        return None


# --- queries: the domain's, with SQL filters and LIMIT, so thousands of runs cost one page ------


@dataclass
class RunPage:
    runs: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def run_page(conn: Connection, f: RunFilters, per_page: int = RUNS_PER_PAGE) -> RunPage:
    """One page of the runs the filters select, newest first by start or end time."""
    where = RunFilter(
        since=_midnight(f.since),
        until=_midnight(f.until + timedelta(days=1)) if f.until and f.until < date.max else None,
        feed=f.feed,
        operation=f.operation,
        status=f.status,
    )
    sort = RunSort(f.sort)
    rows, total = runs.find_runs(
        conn, where, sort=sort, limit=per_page, offset=(f.page - 1) * per_page
    )
    pages = max(1, -(-total // per_page))
    if f.page > pages:  # a page past the end (the runs changed since): show the last one
        rows, total = runs.find_runs(
            conn, where, sort=sort, limit=per_page, offset=(pages - 1) * per_page
        )
    return RunPage(rows, total, min(f.page, pages), pages)


@dataclass
class ErrorCard:
    category: str
    title: str
    errors: int
    records: int
    resolution: str
    items: list[dict[str, Any]] = field(default_factory=list)


def error_cards(conn: Connection, feed: str | None = None) -> list[ErrorCard]:
    """The current errors per category: counts of errors and affected records, what to do, and the
    most recent records (the CSV export has them all)."""
    cards = []
    for summary in runs.error_summary(conn, feed=feed):
        items, _ = runs.errors_page(
            conn, feed=feed, category=summary.category, limit=RECORDS_PER_CARD
        )
        guide = help_for(summary.category)
        cards.append(
            ErrorCard(
                summary.category,
                guide.title,
                summary.errors,
                summary.records,
                guide.resolution,
                items,
            )
        )
    return cards


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


# --- routes --------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    session = current_session(request, get_context(request))
    if session is not None and session.key.allows(ADMIN_PERMISSION):
        return RedirectResponse("/dashboard", status_code=303)
    return _page(request, "login.html", {})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    ctx = get_context(request)
    raw_key = _field(await _form(request), "api_key").strip()
    key = await run_in_threadpool(authenticate, ctx, raw_key) if raw_key else None
    if key is None:
        log.info("dashboard.login_refused", reason="unknown key" if raw_key else "no key")
        message = (
            "That API key is not valid: it is unknown or revoked. Paste the key printed by "
            f"`python -m worker apikey:create` for a key with the {ADMIN_PERMISSION} permission."
            if raw_key
            else "Enter an API key to log in."
        )
        return _page(request, "login.html", {"error": message}, status_code=401)
    if not key.allows(ADMIN_PERMISSION):
        log.info("dashboard.login_forbidden", key_id=key.id)
        return _forbidden(request, key.name)
    response = RedirectResponse("/dashboard", status_code=303)
    await run_in_threadpool(sessions.start, request, response, ctx, key)
    log.info("dashboard.login", key_id=key.id)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    session = await run_in_threadpool(current_session, request, get_context(request))
    if session is not None and sessions.csrf_ok(session, _field(form, CSRF_FIELD)):
        log.info("dashboard.logout", key_id=session.key.id)
    response = RedirectResponse("/dashboard/login", status_code=303)
    sessions.end(response)
    return response


def _admin_session(request: Request, ctx: Context) -> Session | Response:
    """The signed-in admin's session, or the answer for anyone else (log in, or 403)."""
    session = current_session(request, ctx)
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    if not session.key.allows(ADMIN_PERMISSION):
        return _forbidden(request, session.key.name, session)
    return session


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    ctx = get_context(request)
    session = _admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    params = dict(request.query_params)
    return _render_dashboard(request, ctx, session, params, notices=_resync_notice(params))


@router.get("/errors.csv")
def errors_csv(request: Request, feed: str | None = None, category: str | None = None) -> Response:
    """Export CSV: the API's CSV for the signed-in admin (the API itself takes only Bearer keys)."""
    ctx = get_context(request)
    session = _admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    try:
        chosen = ErrorCategory(category) if category else None
    except ValueError:
        chosen = None
    if (feed and feed not in ctx.registry.names()) or (category and chosen is None):
        context = {
            "title": "Unknown filter",
            "message": "No such feed or category.",
            "session": session,
        }
        return _page(request, "message.html", context, status_code=400)
    return csv_download(ctx, feed or None, chosen)


@router.post("/resync", response_class=HTMLResponse)
async def resync(request: Request) -> Response:
    ctx = get_context(request)
    form = await _form(request)
    session = await run_in_threadpool(_admin_session, request, ctx)
    if not isinstance(session, Session):
        return session
    if not sessions.csrf_ok(session, _field(form, CSRF_FIELD)):
        log.warning("dashboard.csrf_refused", key_id=session.key.id)
        message = (
            "This form is out of date or did not come from the dashboard; "
            "reload the dashboard and try again."
        )
        context = {"title": "Form expired", "message": message, "session": session}
        return _page(request, "message.html", context, status_code=403)
    back = _back(form)
    selected = form.get("error_id", [])
    problem, status = None, 400
    if not selected:
        problem = "No error was selected: tick the records to resync, then press Resync."
    elif not all(number(value) is not None for value in selected):
        problem = (
            "The selection holds something other than sync error ids; reload and select again."
        )
    elif len(selected) > MAX_RESYNC_ERRORS:
        problem = (
            f"{len(selected)} errors were selected, but at most {MAX_RESYNC_ERRORS} can be resynced "
            f"at once: select {MAX_RESYNC_ERRORS} or fewer and press Resync again."
        )
    else:
        try:
            outcome = await run_in_threadpool(resync_errors, ctx, [int(v) for v in selected])
        except LockedError as exc:
            problem, status = str(exc), 409
        except FeedsyncError as exc:
            problem = str(exc)
    if problem is not None:
        log.info("dashboard.resync_refused", key_id=session.key.id, selected=len(selected))
        return await run_in_threadpool(
            _render_dashboard, request, ctx, session, back, (), (problem,), status
        )
    log.info(
        "dashboard.resynced",
        key_id=session.key.id,
        selected=len(selected),
        cleared=len(outcome.resolved),
        still_failing=len(outcome.still_failing),
    )
    result = {
        "resynced": len(outcome.resolved) + len(outcome.still_failing),
        "cleared": len(outcome.resolved),
    }
    return RedirectResponse(f"/dashboard?{urlencode({**back, **result})}", status_code=303)


# --- rendering -----------------------------------------------------------------------------------


def _render_dashboard(
    request: Request,
    ctx: Context,
    session: Session,
    params: Mapping[str, str],
    notices: Sequence[str] = (),
    problems: Sequence[str] = (),
    status_code: int = 200,
) -> Response:
    feeds = ctx.registry.names()
    filters, filter_problems = parse_filters(params, feeds, utcnow().date())
    runs.close_abandoned(ctx.db)  # never show a run of a dead process as running
    with ctx.db.connect() as conn:
        page = run_page(conn, filters)
        cards = error_cards(conn, filters.feed)
    return _page(
        request,
        "dashboard.html",
        {
            "session": session,
            "filters": filters,
            "page": page,
            "cards": cards,
            "feeds": feeds,
            "operations": [o.value for o in Operation],
            "statuses": [s.value for s in RunStatus],
            "notices": list(notices),
            "problems": [*problems, *filter_problems],
            "usage": budget.usage_by_destination(ctx),
            "shown_url": public_destination,
            "max_resync": MAX_RESYNC_ERRORS,
            "csv_url": "/dashboard/errors.csv",
        },
        status_code=status_code,
    )


def _page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, template, {**context, "nonce": nonce}, status_code=status_code
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


def _forbidden(request: Request, key_name: str, session: Session | None = None) -> Response:
    """403: the key is fine but lacks sync.admin (at login, or since it was changed)."""
    return _page(
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


def _resync_notice(params: Mapping[str, str]) -> list[str]:
    resynced, cleared = number(params.get("resynced", "")), number(params.get("cleared", ""))
    if resynced is None or cleared is None:
        return []
    failing = resynced - cleared
    text = f"Resynced {resynced} error{'s' if resynced != 1 else ''}: {cleared} cleared"
    return [f"{text}, {failing} still failing." if failing > 0 else f"{text}."]


def _back(form: Mapping[str, list[str]]) -> dict[str, str]:
    """The filter state the resync form came from (query parameters only: no open redirect)."""
    keep = ("from", "to", "feed", "operation", "status", "sort", "page")
    pairs = parse_qsl(_field(form, "back"))
    return {k: v for k, v in pairs if k in keep}


def _field(form: Mapping[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (all the dashboard's forms are; no multipart parser needed).

    The dashboard's largest form is a few kilobytes; a body past MAX_FORM_BYTES is not read on.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    return parse_qs(bytes(body[:MAX_FORM_BYTES]).decode("utf-8", "replace"), keep_blank_values=True)
