"""`GET /sync/runs`: the sync runs, filtered by date range, feed, operation and status, sorted by
start or end time, paged by offset; `GET /sync/runs/{run_id}`: one run with its errors by category."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from feeds.definitions import Operation, RunStatus
from feeds.history import read_model, runs
from feeds.history.categories import help_for
from feeds.history.read_model import RunFilter, RunRow, RunSort
from worker.api.admin.endpoint import ERRORS, Admin, feed_name, iso_time, offset_links
from worker.api.auth import get_context
from worker.api.cdi import Message
from worker.api.errors import ApiError
from worker.api.filters import EndMoment, StartMoment

router = APIRouter()


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


class CategoryCount(BaseModel):
    category: str
    title: str
    errors: int = Field(description="errors the run recorded in this category")
    current: int = Field(description="of them, those not resolved since")


class RunDetail(BaseModel):
    run: RunOut
    duration_s: float | None = Field(description="finished_at - started_at; null while running")
    categories: list[CategoryCount]
    errors: int
    items_recorded: bool = Field(
        description="false: the feed table keeps each item's last status, not the run that set "
        "it, so a run's items are its counters and its errors"
    )
    errors_url: str
    csv_url: str
    message: str


class RunList(BaseModel):
    results: list[RunOut]
    total: int
    limit: int
    offset: int
    message: str


@router.get("/runs", response_model=RunList, responses=ERRORS, summary="Sync runs, filtered")
def list_runs(
    request: Request,
    response: Response,
    key: Admin,
    since: Annotated[
        StartMoment | None,
        Query(description="runs started at or after: YYYY-MM-DD or ISO 8601 time"),
    ] = None,
    until: Annotated[
        EndMoment | None,
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
        since=since,
        until=until,
        feed=feed_name(ctx, feed),
        operation=operation.value if operation else None,
        status=status.value if status else None,
    )
    runs.close_abandoned(ctx.db)  # never report a run of a dead process as running
    with ctx.db.connect() as conn:
        rows, total = read_model.find_runs(conn, where, sort=sort, limit=limit, offset=offset)
    offset_links(request, response, limit, offset, total)
    return RunList(
        results=[run_out(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        message="success",
    )


def run_out(row: RunRow) -> RunOut:
    return RunOut.model_validate(
        {
            **asdict(row),
            "started_at": iso_time(row.started_at),
            "finished_at": iso_time(row.finished_at),
            "last_timestamp_synced": iso_time(row.last_timestamp_synced),
        }
    )


@router.get(
    "/runs/{run_id}",
    response_model=RunDetail,
    responses={**ERRORS, 404: {"model": Message, "description": "No such run (or removed)"}},
    summary="One sync run: counters, message, duration, its errors by category",
)
def get_run(request: Request, key: Admin, run_id: Annotated[str, Path(max_length=32)]) -> RunDetail:
    ctx = get_context(request)
    runs.close_abandoned(ctx.db)
    with ctx.db.connect() as conn:
        row = read_model.get_run(conn, run_id)
        categories = read_model.run_error_categories(conn, run_id) if row else []
    if row is None:
        raise ApiError(
            404,
            f"No sync run {run_id!r}: it never existed or was removed after the retention "
            "period; GET /sync/runs lists the runs kept.",
        )
    return RunDetail(
        run=run_out(row),
        duration_s=row.duration_s,
        categories=[
            CategoryCount(
                category=c.category,
                title=help_for(c.category).title,
                errors=c.errors,
                current=c.current,
            )
            for c in categories
        ],
        errors=sum(c.errors for c in categories),
        items_recorded=False,
        errors_url=f"/sync/errors?run_id={row.id}&include_resolved=true",
        csv_url=f"/sync/errors.csv?run_id={row.id}&include_resolved=true",
        message="success",
    )
