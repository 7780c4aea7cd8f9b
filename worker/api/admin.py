"""The admin endpoints of SPEC §7 (`sync.admin`): run history, errors by category, CSV export,
resync of selected errors, API-call usage, notification settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictInt

from feeds.context import Context
from feeds.definitions import Operation, RunStatus
from feeds.errors import FeedsyncError, LockedError
from feeds.export import budget
from feeds.export.protocol import ErrorCategory
from feeds.history import csv_export, read_model, runs
from feeds.history.categories import help_for
from feeds.history.integrations import public_destination
from feeds.history.read_model import RunFilter, RunSort
from feeds.notify import settings
from feeds.pipeline.diff import iso
from feeds.pipeline.resync import MAX_RESYNC_ERRORS, resync_errors
from worker.api.apikeys import ApiKey, Permission
from worker.api.auth import ApiError, get_context, known_query_only, require
from worker.api.cdi import Message

router = APIRouter(prefix="/sync", tags=["sync admin"], dependencies=[Depends(known_query_only)])

Admin = Annotated[ApiKey, Depends(require(Permission.SYNC_ADMIN))]
RunIdParam = Annotated[
    str | None, Query(max_length=32, description="only the errors of this run (its id)")
]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Message, "description": "A parameter is not accepted"},
    401: {"model": Message, "description": "Missing or unknown API key"},
    403: {"model": Message, "description": "The API key lacks sync.admin"},
}


class RunOut(BaseModel):
    id: str
    feed: str
    operation: str
    status: str
    started_at: str
    finished_at: str | None
    new: int
    updated: int
    deleted: int
    failed: int
    skipped: int
    rows_synced: int
    rows_failed_with_errors: int
    last_timestamp_synced: str | None
    message: str | None


class RunList(BaseModel):
    results: list[RunOut]
    total: int
    limit: int
    offset: int
    message: str


class ErrorOut(BaseModel):
    id: int
    run_id: str
    feed: str
    item_id: str
    category: str
    code: str | None
    message: str | None
    first_seen: str
    last_seen: str
    attempts: int
    resolved: bool


class CategoryOut(BaseModel):
    category: str
    title: str
    errors: int
    records: int
    resolution: str


class ErrorList(BaseModel):
    categories: list[CategoryOut]
    results: list[ErrorOut]
    total: int
    limit: int
    offset: int
    message: str


class ResyncIn(BaseModel):
    error_ids: list[Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]] = Field(
        description=f"ids of sync errors (from GET /sync/errors), at most {MAX_RESYNC_ERRORS}"
    )


class ResyncOut(BaseModel):
    resolved: list[int]
    still_failing: list[int]
    run_ids: list[str]
    message: str


@router.get("/runs", response_model=RunList, responses=ERRORS, summary="Sync runs, filtered")
def list_runs(
    request: Request,
    response: Response,
    key: Admin,
    since: Annotated[
        str | None, Query(description="runs started at or after: YYYY-MM-DD or ISO 8601 time")
    ] = None,
    until: Annotated[
        str | None,
        Query(description="runs started before: ISO 8601 time, or YYYY-MM-DD (that day included)"),
    ] = None,
    feed: str | None = None,
    operation: Operation | None = None,
    status: RunStatus | None = None,
    sort: Annotated[RunSort, Query(description="newest first by start or by end time")] = (
        RunSort.START
    ),
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RunList:
    ctx = get_context(request)
    where = RunFilter(
        since=_moment("since", since, end_of_day=False),
        until=_moment("until", until, end_of_day=True),
        feed=_feed_name(ctx, feed),
        operation=operation.value if operation else None,
        status=status.value if status else None,
    )
    runs.close_abandoned(ctx.db)  # never report a run of a dead process as running
    with ctx.db.connect() as conn:
        rows, total = read_model.find_runs(conn, where, sort=sort, limit=limit, offset=offset)
    _offset_links(request, response, limit, offset, total)
    return RunList(
        results=[_run(r) for r in rows], total=total, limit=limit, offset=offset, message="success"
    )


@router.get(
    "/errors",
    response_model=ErrorList,
    responses=ERRORS,
    summary="Sync errors by category, with counts and resolution steps",
)
def list_errors(
    request: Request,
    response: Response,
    key: Admin,
    feed: str | None = None,
    category: ErrorCategory | None = None,
    include_resolved: bool = False,
    run_id: RunIdParam = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ErrorList:
    ctx = get_context(request)
    name = _feed_name(ctx, feed)
    with ctx.db.connect() as conn:
        summary = read_model.error_summary(conn, feed=name, run_id=run_id)
        rows, total = read_model.errors_page(
            conn,
            feed=name,
            category=category.value if category else None,
            include_resolved=include_resolved,
            run_id=run_id,
            limit=limit,
            offset=offset,
        )
    _offset_links(request, response, limit, offset, total)
    categories = [
        CategoryOut(
            category=s.category,
            title=help_for(s.category).title,
            errors=s.errors,
            records=s.records,
            resolution=help_for(s.category).resolution,
        )
        for s in summary
        if category is None or s.category == category.value
    ]
    return ErrorList(
        categories=categories,
        results=[_error(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        message="success",
    )


@router.get(
    "/errors.csv",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}, "description": "CSV, a header first"}},
    summary="Sync errors as CSV",
)
def errors_csv(
    request: Request,
    key: Admin,
    feed: str | None = None,
    category: ErrorCategory | None = None,
    include_resolved: bool = False,
    run_id: RunIdParam = None,
) -> StreamingResponse:
    ctx = get_context(request)
    return csv_download(ctx, _feed_name(ctx, feed), category, include_resolved, run_id)


def csv_download(
    ctx: Context,
    feed: str | None,
    category: ErrorCategory | None,
    include_resolved: bool = False,
    run_id: str | None = None,
) -> StreamingResponse:
    """The sync errors as a CSV attachment (also the dashboard's Export CSV)."""
    with ctx.db.connect() as conn:
        rows = read_model.list_errors(
            conn,
            feed=feed,
            category=category.value if category else None,
            include_resolved=include_resolved,
            run_id=run_id,
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        csv_export.errors_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="sync-errors-{stamp}.csv"'},
    )


@router.post(
    "/errors/resync",
    response_model=ResyncOut,
    responses={
        **ERRORS,
        400: {
            "model": Message,
            "description": f"No ids, more than {MAX_RESYNC_ERRORS}, or unknown ids",
        },
        409: {"model": Message, "description": "The feed is being synced by another process"},
    },
    summary=f"Resend the items of selected errors (at most {MAX_RESYNC_ERRORS})",
)
def resync_selected_errors(request: Request, body: ResyncIn, key: Admin) -> ResyncOut:
    ctx = get_context(request)
    try:
        outcome = resync_errors(ctx, body.error_ids)
    except LockedError as exc:
        raise ApiError(409, str(exc)) from None
    except FeedsyncError as exc:
        raise ApiError(400, str(exc)) from None
    return ResyncOut(
        resolved=outcome.resolved,
        still_failing=outcome.still_failing,
        run_ids=outcome.run_ids,
        message="success",
    )


class UsageOut(BaseModel):
    destination: str
    counted: bool
    calls_24h: int
    destination_limit: int | None
    allocation: int | None
    cap: int | None
    remaining: int | None
    paused: bool
    window_start: str
    next_free_at: str | None
    resumes_at: str | None


class UsageList(BaseModel):
    results: list[UsageOut]
    message: str


class NotificationsIn(BaseModel):
    frequency: str = Field(description="off, immediately, daily or weekly")
    webhook_url: str | None = Field(
        default=None, description="http(s) URL receiving the JSON POSTs; needed unless off"
    )


class NotificationsOut(BaseModel):
    frequency: str
    webhook_url: str | None
    source: str
    updated_at: str | None
    message: str


@router.get(
    "/usage",
    response_model=UsageList,
    responses=ERRORS,
    summary="API calls to each destination in the last 24 hours, with the limit and allocation",
)
def api_usage(request: Request, key: Admin) -> UsageList:
    ctx = get_context(request)
    results = []
    for current in budget.usage_by_destination(ctx):
        results.append(
            UsageOut.model_validate(
                {
                    **current.as_dict(),
                    "destination": public_destination(current.destination),
                    "window_start": _time(current.window_start),
                    "next_free_at": _time(current.next_free_at),
                    "resumes_at": _time(current.resumes_at),
                }
            )
        )
    return UsageList(results=results, message="success")


@router.get(
    "/notifications",
    response_model=NotificationsOut,
    responses=ERRORS,
    summary="Notification settings in force, and where they come from",
)
def get_notifications(request: Request, key: Admin) -> NotificationsOut:
    return _notifications(settings.current_settings(get_context(request)))


@router.put(
    "/notifications",
    response_model=NotificationsOut,
    responses=ERRORS,
    summary="Change the notification settings for every worker",
)
def put_notifications(request: Request, body: NotificationsIn, key: Admin) -> NotificationsOut:
    try:
        changed = settings.update_settings(
            get_context(request), frequency=body.frequency, webhook_url=body.webhook_url
        )
    except FeedsyncError as exc:
        raise ApiError(400, str(exc)) from None
    return _notifications(changed)


def _notifications(config: settings.NotificationConfig) -> NotificationsOut:
    return NotificationsOut(
        frequency=config.frequency.value,
        webhook_url=config.webhook_url,
        source=config.source,
        updated_at=_time(config.updated_at),
        message="success",
    )


# --- helpers -------------------------------------------------------------------------------


def _feed_name(ctx: Context, feed: str | None) -> str | None:
    if feed is None:
        return None
    if feed not in ctx.registry.names():
        raise ApiError(
            400, f"feed {feed!r} is not a feed; accepted feeds: {', '.join(ctx.registry.names())}."
        )
    return feed


def _moment(name: str, text: str | None, *, end_of_day: bool) -> datetime | None:
    """Naive UTC from `YYYY-MM-DD` or an ISO 8601 time; a bare date as `until` includes that day."""
    if text is None:
        return None
    try:
        return read_model.parse_moment(text, end_of_day=end_of_day)
    except ValueError as exc:
        raise ApiError(400, f"{name} {exc}") from None


def _offset_links(
    request: Request, response: Response, limit: int, offset: int, total: int
) -> None:
    links = []
    if offset > 0:
        prev = request.url.include_query_params(offset=max(0, offset - limit), limit=limit)
        links.append(f'<{prev}>; rel="prev"')
    if offset + limit < total:
        nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
        links.append(f'<{nxt}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)


def _time(value: object) -> str | None:
    return iso(value) if isinstance(value, datetime) else None


def _run(row: dict[str, object]) -> RunOut:
    return RunOut.model_validate(
        {
            **row,
            "started_at": _time(row["started_at"]),
            "finished_at": _time(row["finished_at"]),
            "last_timestamp_synced": _time(row["last_timestamp_synced"]),
        }
    )


def _error(row: dict[str, object]) -> ErrorOut:
    return ErrorOut.model_validate(
        {
            **row,
            "first_seen": _time(row["first_seen"]),
            "last_seen": _time(row["last_seen"]),
            "resolved": bool(row["resolved"]),
        }
    )
