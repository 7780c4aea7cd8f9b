"""`GET /sync/runs`: the sync runs, filtered by date range, feed, operation and status, sorted by
start or end time, paged by offset."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from feeds.definitions import Operation, RunStatus
from feeds.history import read_model, runs
from feeds.history.read_model import RunFilter, RunRow, RunSort
from worker.api.admin.endpoint import ERRORS, Admin, feed_name, iso_time, offset_links
from worker.api.auth import get_context
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
        results=[_run(r) for r in rows], total=total, limit=limit, offset=offset, message="success"
    )


def _run(row: RunRow) -> RunOut:
    return RunOut.model_validate(
        {
            **asdict(row),
            "started_at": iso_time(row.started_at),
            "finished_at": iso_time(row.finished_at),
            "last_timestamp_synced": iso_time(row.last_timestamp_synced),
        }
    )
