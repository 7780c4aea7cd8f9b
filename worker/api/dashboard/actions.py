"""The dashboard's actions on a feed (the health table's form: reindex, resync, suspend, resume,
set the mode; an error card's "Resync all" of a category) and the audit list. Every form carries the session's form token (CSRF)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from feeds.definitions import IndexerMode
from feeds.errors import FeedsyncError
from feeds.export.protocol import ErrorCategory
from feeds.history import audit
from worker.api.actions import Action, ActionRequest, perform
from worker.api.auth import get_context
from worker.api.dashboard.filters import number
from worker.api.dashboard.pages import message_page, page_response
from worker.api.dashboard.routes import admin_form, admin_session
from worker.api.errors import status_for
from worker.api.session import Session

log = structlog.get_logger("worker.api.dashboard")

router = APIRouter(prefix="/dashboard", include_in_schema=False)

# The choices of the health table's action menu: value → (action, mode).
CHOICES: dict[str, tuple[Action, IndexerMode | None]] = {
    "reindex": (Action.REINDEX, None),
    "resync": (Action.RESYNC, None),
    "resync_errors": (Action.RESYNC_ERRORS, None),
    "suspend": (Action.SUSPEND, None),
    "resume": (Action.RESUME, None),
    "mode:realtime": (Action.SET_MODE, IndexerMode.REALTIME),
    "mode:schedule": (Action.SET_MODE, IndexerMode.SCHEDULE),
}
AUDIT_PER_PAGE = 100


@router.post("/feeds/{feed}/action", response_class=HTMLResponse)
def feed_action(
    request: Request,
    feed: str,
    csrf_token: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
) -> Response:
    ctx = get_context(request)
    session = admin_form(request, ctx, csrf_token)
    if not isinstance(session, Session):
        return session
    if feed not in ctx.registry.names() or action not in CHOICES:
        message = f"There is no action {action!r} on a feed {feed!r}; reload the dashboard."
        return message_page(request, "Unknown action", message, session, 400)
    chosen, mode = CHOICES[action]
    categories = {c.value: c for c in ErrorCategory}
    if chosen is Action.RESYNC_ERRORS and category not in categories:
        message = f"There is no error category {category!r}; reload the dashboard."
        return message_page(request, "Unknown category", message, session, 400)
    try:
        entry_id = perform(
            ctx,
            request.app.state.trigger,
            session.key,
            ActionRequest(chosen, ctx.registry.get(feed), mode, categories.get(category)),
        )
    except FeedsyncError as exc:
        return message_page(request, "Action refused", str(exc), session, status_for(exc))
    where = "errors" if chosen is Action.RESYNC_ERRORS else "health"
    return RedirectResponse(f"/dashboard?acted={entry_id}#{where}", status_code=303)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, page: str = "1") -> Response:
    ctx = get_context(request)
    session = admin_session(request, ctx)
    if not isinstance(session, Session):
        return session
    current = min(number(page) or 1, 100_000)
    with ctx.db.connect() as conn:
        entries, total = audit.recent(
            conn, limit=AUDIT_PER_PAGE, offset=(current - 1) * AUDIT_PER_PAGE
        )
    pages = max(1, -(-total // AUDIT_PER_PAGE))
    return page_response(
        request,
        "audit.html",
        {"session": session, "entries": entries, "total": total, "page": current, "pages": pages},
    )
