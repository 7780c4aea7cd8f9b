"""The dashboard's settings forms: the daily API-call allocation and the error notifications, for
every worker (stored in the worker database), and a test notification. Each change is recorded in
the audit list with the key's name; every form carries the session's form token (CSRF)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from feeds.errors import FeedsyncError
from feeds.export import allocation
from feeds.notify import settings, webhook
from worker.api.actions import record_setting
from worker.api.admin.notifications import describe
from worker.api.auth import get_context
from worker.api.dashboard.pages import render_dashboard
from worker.api.dashboard.routes import admin_form
from worker.api.errors import status_for
from worker.api.session import Session

log = structlog.get_logger("worker.api.dashboard")

router = APIRouter(prefix="/dashboard/settings", include_in_schema=False)


@router.post("/allocation", response_class=HTMLResponse)
def set_allocation(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    allocation_value: Annotated[str, Form(alias="allocation")] = "",
    reset: Annotated[str, Form()] = "",
) -> Response:
    ctx = get_context(request)
    session = admin_form(request, ctx, csrf_token)
    if not isinstance(session, Session):
        return session
    value = allocation.DEFAULT if reset else allocation_value
    try:
        changed = allocation.change(ctx, value, by=session.key.name)
    except FeedsyncError as exc:
        return _refused(request, session, exc)
    shown = "unlimited" if value.strip() == "" else value.strip()
    entry = record_setting(ctx, session.key, "set_allocation", shown, allocation.describe(changed))
    return RedirectResponse(f"/dashboard?acted={entry}#settings", status_code=303)


@router.post("/notifications", response_class=HTMLResponse)
def set_notifications(
    request: Request,
    csrf_token: Annotated[str, Form()] = "",
    frequency: Annotated[str, Form()] = "",
    webhook_url: Annotated[str, Form()] = "",
) -> Response:
    ctx = get_context(request)
    session = admin_form(request, ctx, csrf_token)
    if not isinstance(session, Session):
        return session
    try:
        changed = settings.update_settings(ctx, frequency=frequency, webhook_url=webhook_url)
    except FeedsyncError as exc:
        return _refused(request, session, exc)
    outcome = f"Notification settings saved: {describe(changed)}."
    entry = record_setting(ctx, session.key, "set_notifications", describe(changed), outcome)
    return RedirectResponse(f"/dashboard?acted={entry}#settings", status_code=303)


@router.post("/notifications/test", response_class=HTMLResponse)
def test_notification(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    ctx = get_context(request)
    session = admin_form(request, ctx, csrf_token)
    if not isinstance(session, Session):
        return session
    try:
        outcome = webhook.send_test(ctx)
    except FeedsyncError as exc:
        record_setting(ctx, session.key, "test_notification", None, f"Refused: {exc}")
        return _refused(request, session, exc)
    entry = record_setting(ctx, session.key, "test_notification", None, outcome)
    return RedirectResponse(f"/dashboard?acted={entry}#settings", status_code=303)


def _refused(request: Request, session: Session, exc: FeedsyncError) -> Response:
    log.info("dashboard.setting_refused", key_id=session.key.id, reason=str(exc))
    ctx = get_context(request)
    return render_dashboard(request, ctx, session, {}, (), (str(exc),), status_for(exc))
