"""`GET /sync/errors` (by category, with counts and resolution steps), `GET /sync/errors.csv`, and
`POST /sync/errors/resync` (resend the items of selected errors)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictInt

from feeds.context import Context
from feeds.export.protocol import ErrorCategory
from feeds.history import csv_export, error_details, read_model
from feeds.history.categories import help_for
from feeds.history.read_model import ErrorRow
from feeds.history.record_links import RecordLinks, record_links, url_templates
from feeds.pipeline.resync_errors import MAX_RESYNC_ERRORS, resync_errors
from worker.api.admin.endpoint import ERRORS, Admin, feed_name, iso_time, offset_links
from worker.api.auth import get_context
from worker.api.cdi import Message

router = APIRouter()

RunIdParam = Annotated[
    str | None, Query(max_length=32, description="only the errors of this run (its id)")
]


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
    field: str | None = Field(default=None, description="the field the destination named")
    value: str | None = Field(
        default=None,
        description="the value it refused, or (associations) the associated record it lacks",
    )
    source_url: str | None = Field(
        default=None, description="the record in the source application (feeds.F.record_url)"
    )
    destination_url: str | None = Field(
        default=None, description="the record in the destination (feeds.F.destination_url)"
    )


class GroupOut(BaseModel):
    field: str | None
    value: str | None
    errors: int
    records: int
    item_ids: list[str]
    values: list[str]


class CategoryOut(BaseModel):
    category: str
    title: str
    errors: int
    records: int
    resolution: str
    groups: list[GroupOut] = Field(
        description="picklists and property errors by field; associations by the missing "
        "associated record, with the records it holds back"
    )


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
    name = feed_name(ctx, feed)
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
        found_groups = {s.category: error_details.groups(conn, s.category, name) for s in summary}
        links = record_links(conn, rows, url_templates(ctx))
    offset_links(request, response, limit, offset, total)
    categories = [
        CategoryOut(
            category=s.category,
            title=help_for(s.category).title,
            errors=s.errors,
            records=s.records,
            resolution=help_for(s.category).resolution,
            groups=[GroupOut.model_validate(asdict(g)) for g in found_groups[s.category]],
        )
        for s in summary
        if category is None or s.category == category.value
    ]
    return ErrorList(
        categories=categories,
        results=[error_out(r, links.get(r.id)) for r in rows],
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
    return csv_download(ctx, feed_name(ctx, feed), category, include_resolved, run_id)


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
    # A refusal (no ids, too many, unknown ones: 400; the feed is held: 409) is the domain's error,
    # answered by the API's one error handler.
    outcome = resync_errors(get_context(request), body.error_ids)
    return ResyncOut(
        resolved=outcome.resolved,
        still_failing=outcome.still_failing,
        run_ids=outcome.run_ids,
        message="success",
    )


def error_out(row: ErrorRow, links: RecordLinks | None = None) -> ErrorOut:
    return ErrorOut.model_validate(
        {
            **asdict(row),
            "first_seen": iso_time(row.first_seen),
            "last_seen": iso_time(row.last_seen),
            "resolved": row.resolved,
            "source_url": links.source if links else None,
            "destination_url": links.destination if links else None,
        }
    )
