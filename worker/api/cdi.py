"""The `cdi` endpoints of SPEC §7: integrations, triggering a sync, and the job-sync-status list.

Lists are newest first, exactly 10 per page, with signed cursors and a `Link` header.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from feeds.context import Context
from feeds.definitions import Feed
from feeds.errors import LockedError
from feeds.history import integrations, read_model, runs
from feeds.history.integrations import Integration
from feeds.history.read_model import RunRow
from feeds.pipeline.diff import iso
from worker.api import cursors, ratelimit
from worker.api.apikeys import ApiKey, Permission
from worker.api.auth import get_context, known_query_only, require
from worker.api.cursors import Cursor, CursorError, Direction
from worker.api.errors import ApiError
from worker.api.pagination import PAGE_SIZE, Page, link_header
from worker.sync_requests import SyncTrigger

router = APIRouter(prefix="/cdi", tags=["cdi"], dependencies=[Depends(known_query_only)])


class Message(BaseModel):
    message: str


class IntegrationOut(BaseModel):
    integration_id: str
    integration_name: str
    destination: str
    export_mode: str
    indexer_mode: str
    last_job_start_time: str | None
    last_job_status: str | None
    next_scheduled_run: str | None


class IntegrationList(BaseModel):
    results: list[IntegrationOut]
    message: str


class JobOut(BaseModel):
    run_id: str = Field(description="the sync run: its detail is GET /sync/runs/{run_id}")
    job_status: str
    sync_start_time: str
    sync_finish_time: str | None
    last_timestamp_synced: str | None
    rows_synced: int
    rows_failed_with_errors: int


class JobList(BaseModel):
    results: list[JobOut]
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Message, "description": "Invalid integration ID, or invalid cursor"},
    401: {"model": Message, "description": "Missing or unknown API key"},
    403: {"model": Message, "description": "The API key lacks the permission"},
    429: {"model": Message, "description": "Rate limit exceeded (with Retry-After)"},
}
LINK_HEADER: dict[str, Any] = {
    "Link": {
        "description": 'Neighbour pages: `<url?cursor=…>; rel="prev"` and/or `rel="next"`',
        "schema": {"type": "string"},
    }
}
CursorParam = Annotated[
    str | None, Query(description="Opaque cursor from a `Link` header of an earlier page.")
]

INVALID_INTEGRATION = "Invalid integration ID"
INVALID_CURSOR = "Invalid cursor"
IN_PROGRESS = "Another job is in progress"


@router.get(
    "/integrations",
    response_model=IntegrationList,
    responses={**ERRORS, 200: {"headers": LINK_HEADER}},
    summary="List integrations (one per feed and destination), newest job first",
)
def list_integrations(
    request: Request,
    response: Response,
    key: Annotated[ApiKey, Depends(require(Permission.INTEGRATION_LIST, ratelimit.LIST))],
    cursor: CursorParam = None,
) -> IntegrationList:
    ctx = get_context(request)
    position = _cursor(request, cursor, "integrations")
    page = integrations_page(integrations.list_integrations(ctx), position)
    _link(request, response, "integrations", page)
    return IntegrationList(results=[_integration(i) for i in page.rows], message="success")


@router.post(
    "/integrations/{integration_id}/sync",
    status_code=202,
    response_model=Message,
    responses={
        **ERRORS,
        429: {
            "model": Message,
            "description": "Another job is in progress for this integration, or rate limit exceeded",
        },
    },
    summary="Queue a sync of the integration",
)
def trigger_sync(
    integration_id: str,
    request: Request,
    key: Annotated[ApiKey, Depends(require(Permission.INTEGRATION_SYNC, ratelimit.TRIGGER))],
) -> Message:
    ctx = get_context(request)
    feed = _feed(ctx, integration_id)
    trigger: SyncTrigger = request.app.state.trigger
    try:
        trigger(ctx, feed)
    except LockedError:
        raise ApiError(429, IN_PROGRESS) from None
    return Message(message="success")


@router.get(
    "/integrations/{integration_id}/job_sync_status",
    response_model=JobList,
    responses={**ERRORS, 200: {"headers": LINK_HEADER}},
    summary="Sync jobs of the integration, newest first",
)
def job_sync_status(
    integration_id: str,
    request: Request,
    response: Response,
    key: Annotated[
        ApiKey, Depends(require(Permission.INTEGRATION_JOB_STATUS, ratelimit.JOB_STATUS))
    ],
    cursor: CursorParam = None,
) -> JobList:
    ctx = get_context(request)
    feed = _feed(ctx, integration_id)
    scope = f"jobs:{uuid.UUID(integration_id)}"
    position = _cursor(request, cursor, scope)
    try:
        start = (
            None if position is None else (datetime.fromisoformat(position.key[0]), position.key[1])
        )
    except (ValueError, IndexError):
        raise ApiError(400, INVALID_CURSOR) from None
    runs.close_abandoned(ctx.db)  # never report a run of a dead process as running
    with ctx.db.connect() as conn:
        page = jobs_page(conn, feed.name, position.direction if position else None, start)
    _link(request, response, scope, page)
    return JobList(results=[_job(row) for row in page.rows], message="success")


# --- pages ---------------------------------------------------------------------------------


def integrations_page(found: list[Integration], position: Cursor | None) -> Page[Integration]:
    """The 10 integrations after (or before) the cursor's one, in the list's order."""
    keys = [integrations.order_key(i) for i in found]
    if position is None:
        begin, end = 0, PAGE_SIZE
    elif position.direction is Direction.NEXT:
        anchor = _integration_order(position.key)
        begin = sum(1 for k in keys if k <= anchor)
        end = begin + PAGE_SIZE
    else:
        anchor = _integration_order(position.key)
        end = sum(1 for k in keys if k < anchor)
        begin = max(0, end - PAGE_SIZE)
    rows = found[begin:end]
    return Page(
        rows,
        _integration_key(rows[0]) if rows and begin > 0 else None,
        _integration_key(rows[-1]) if rows and begin + len(rows) < len(found) else None,
    )


def _integration_key(integration: Integration) -> tuple[str, ...]:
    started = integration.last_job_start_time
    return (started.isoformat() if started else "", integration.feed.name)


def _integration_order(key: tuple[str, ...]) -> tuple[int, float, str]:
    if len(key) != 2:
        raise ApiError(400, INVALID_CURSOR)
    if not key[0]:
        return (1, 0.0, key[1])
    try:
        return (0, -datetime.fromisoformat(key[0]).timestamp(), key[1])
    except ValueError:
        raise ApiError(400, INVALID_CURSOR) from None


def jobs_page(
    conn: Connection, feed: str, direction: Direction | None, start: tuple[datetime, str] | None
) -> Page[RunRow]:
    """Up to 10 runs of `feed` from the cursor's position, with the keys of the neighbour pages."""
    if direction is Direction.PREV and start is not None:
        rows = read_model.runs_page(conn, feed, start=start, older=False, limit=PAGE_SIZE + 1)
        has_prev = len(rows) > PAGE_SIZE
        rows = rows[-PAGE_SIZE:]
        has_next = read_model.has_runs_beyond(
            conn, feed, _run_key(rows[-1]) if rows else start, True
        )
    else:
        rows = read_model.runs_page(conn, feed, start=start, older=True, limit=PAGE_SIZE + 1)
        has_next = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        has_prev = start is not None and read_model.has_runs_beyond(
            conn, feed, _run_key(rows[0]) if rows else start, False
        )
    if not rows:
        # Everything on this side of the cursor is gone (retention): offer the way back only.
        back = start is not None and has_prev
        return Page(rows, _key_text(start) if back and start else None, None)
    return Page(
        rows,
        _key_text(_run_key(rows[0])) if has_prev else None,
        _key_text(_run_key(rows[-1])) if has_next else None,
    )


def _run_key(row: RunRow) -> tuple[datetime, str]:
    return (row.started_at, row.id)


def _key_text(key: tuple[datetime, str]) -> tuple[str, ...]:
    return (key[0].isoformat(), key[1])


# --- helpers -------------------------------------------------------------------------------


def _feed(ctx: Context, integration_id: str) -> Feed:
    feed = integrations.find(ctx, integration_id)
    if feed is None:
        raise ApiError(400, INVALID_INTEGRATION)
    return feed


def _cursor(request: Request, token: str | None, scope: str) -> Cursor | None:
    if token is None:
        return None
    try:
        return cursors.decode(token, request.app.state.cursor_secret, scope, time.time())
    except CursorError:
        raise ApiError(400, INVALID_CURSOR) from None


def _link(request: Request, response: Response, scope: str, page: Page[Any]) -> None:
    secret = request.app.state.cursor_secret
    now = time.time()

    def token(direction: Direction, key: tuple[str, ...] | None) -> str | None:
        return None if key is None else cursors.encode(Cursor(scope, direction, key), secret, now)

    header = link_header(
        str(request.url), token(Direction.PREV, page.prev_key), token(Direction.NEXT, page.next_key)
    )
    if header is not None:
        response.headers["Link"] = header


def _time(value: object) -> str | None:
    return iso(value) if isinstance(value, datetime) else None


def _integration(i: Integration) -> IntegrationOut:
    return IntegrationOut(
        integration_id=str(i.id),
        integration_name=i.feed.name,
        destination=i.destination,
        export_mode=i.export_mode.value,
        indexer_mode=i.indexer_mode.value,
        last_job_start_time=_time(i.last_job_start_time),
        last_job_status=i.last_job_status,
        next_scheduled_run=_time(i.next_scheduled_run),
    )


def _job(row: RunRow) -> JobOut:
    return JobOut(
        run_id=row.id,
        job_status=integrations.job_status(row.status),
        sync_start_time=_time(row.started_at) or "",
        sync_finish_time=_time(row.finished_at),
        last_timestamp_synced=_time(row.last_timestamp_synced),
        rows_synced=row.rows_synced,
        rows_failed_with_errors=row.rows_failed_with_errors,
    )
