"""The dashboard's routes: log in and out, the sync-status page, Export CSV, and resync of
selected errors. Every form is urlencoded and carries the session's form token (CSRF)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from feeds.context import Context
from feeds.errors import FeedsyncError
from feeds.export.protocol import ErrorCategory
from feeds.history import audit
from feeds.pipeline.resync_errors import MAX_RESYNC_ERRORS, resync_errors
from worker.api import session as sessions
from worker.api.admin.sync_errors import csv_download
from worker.api.auth import authenticate, get_context
from worker.api.dashboard.filters import DashboardQuery, number
from worker.api.dashboard.pages import (
    ADMIN_PERMISSION,
    forbidden,
    message_page,
    page_response,
    render_dashboard,
    resync_notice,
)
from worker.api.errors import status_for
from worker.api.filters import NotAccepted, choice
from worker.api.session import Session, current_session

log = structlog.get_logger("worker.api.dashboard")

router = APIRouter(prefix="/dashboard", include_in_schema=False)

CATEGORIES = [c.value for c in ErrorCategory]
# The filter state a resync form carries back (query parameters only: no open redirect).
BACK_PARAMETERS = ("from", "to", "feed", "operation", "status", "sort", "page")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    session = current_session(request, get_context(request))
    if session is not None and session.key.allows(ADMIN_PERMISSION):
        return RedirectResponse("/dashboard", status_code=303)
    return page_response(request, "login.html", {})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, api_key: Annotated[str, Form()] = "") -> Response:
    ctx = get_context(request)
    raw_key = api_key.strip()
    key = authenticate(ctx, raw_key) if raw_key else None
    if key is None:
        log.info("dashboard.login_refused", reason="unknown key" if raw_key else "no key")
        message = (
            "That API key is not valid: it is unknown or revoked. Paste the key printed by "
            f"`python -m worker apikey:create` for a key with the {ADMIN_PERMISSION} permission."
            if raw_key
            else "Enter an API key to log in."
        )
        return page_response(request, "login.html", {"error": message}, status_code=401)
    if not key.allows(ADMIN_PERMISSION):
        log.info("dashboard.login_forbidden", key_id=key.id)
        return forbidden(request, key.name)
    response = RedirectResponse("/dashboard", status_code=303)
    sessions.start(request, response, ctx, key)
    log.info("dashboard.login", key_id=key.id)
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    session = current_session(request, get_context(request))
    if session is not None and sessions.csrf_ok(session, csrf_token):
        log.info("dashboard.logout", key_id=session.key.id)
    response = RedirectResponse("/dashboard/login", status_code=303)
    sessions.end(response)
    return response


def admin_session(request: Request, ctx: Context) -> Session | Response:
    """The signed-in admin's session, or the answer for anyone else (log in, or 403)."""
    session = current_session(request, ctx)
    if session is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    if not session.key.allows(ADMIN_PERMISSION):
        return forbidden(request, session.key.name, session)
    return session


def admin_form(request: Request, ctx: Context, csrf_token: str) -> Session | Response:
    """The admin's session for a form they posted from the dashboard, or the answer refusing it."""
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    if not sessions.csrf_ok(session, csrf_token):
        log.warning("dashboard.csrf_refused", key_id=session.key.id)
        message = (
            "This form is out of date or did not come from the dashboard; "
            "reload the dashboard and try again."
        )
        return message_page(request, "Form expired", message, session, 403)
    return session


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, query: Annotated[DashboardQuery, Query()]) -> Response:
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    notices = resync_notice(query.resynced or "", query.cleared or "")
    notices += acted_notice(ctx, query.acted or "")
    return render_dashboard(request, ctx, session, query.sent(), notices=notices)


def acted_notice(ctx: Context, acted: str) -> list[str]:
    """The outcome of an action, shown once on the page its form redirects to: read from the
    audit log by id, so that a URL cannot put words on the page."""
    entry_id = number(acted)
    if entry_id is None:
        return []
    with ctx.db.connect() as conn:
        done = audit.entry(conn, entry_id)
    return [] if done is None else [done.outcome]


@router.get("/errors.csv")
def errors_csv(
    request: Request,
    feed: str | None = None,
    category: str | None = None,
    run_id: str | None = None,
    include_resolved: str | None = None,
) -> Response:
    """Export CSV: the API's CSV for the signed-in admin (the API itself takes only Bearer keys);
    a run's page exports every error of that run, resolved ones too."""
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    try:
        chosen_feed = choice("feed", feed or None, ctx.registry.names())
        chosen = choice("category", category or None, CATEGORIES)
    except NotAccepted:
        return message_page(request, "Unknown filter", "No such feed or category.", session, 400)
    return csv_download(
        ctx,
        chosen_feed,
        ErrorCategory(chosen) if chosen else None,
        include_resolved=include_resolved in ("1", "true"),
        run_id=(run_id or None) and run_id[:32],
    )


@router.post("/resync", response_class=HTMLResponse)
def resync(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    error_id: Annotated[list[str] | None, Form()] = None,
    back: Annotated[str, Form()] = "",
) -> Response:
    ctx = get_context(request)
    session = admin_form(request, ctx, csrf_token)
    if not isinstance(session, Session):
        return session
    filters = {k: v for k, v in parse_qsl(back) if k in BACK_PARAMETERS}
    selected = error_id or []
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
            outcome = resync_errors(ctx, [int(v) for v in selected])
        except FeedsyncError as exc:
            problem, status = str(exc), status_for(exc)
    if problem is not None:
        log.info("dashboard.resync_refused", key_id=session.key.id, selected=len(selected))
        return render_dashboard(request, ctx, session, filters, (), (problem,), status)
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
    return RedirectResponse(f"/dashboard?{urlencode({**filters, **result})}", status_code=303)
