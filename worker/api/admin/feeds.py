"""`GET /sync/feeds` (each feed's health), `GET /sync/feeds/{feed}/items` (the items of one item
status) and `GET /sync/items` (one item looked up across the feeds)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, Field

from feeds.clock import utcnow
from feeds.history.feed_health import feed_health
from feeds.history.health import (
    ITEM_STATUSES,
    STATUS_KEYS,
    FeedSnapshot,
    LastRun,
    Verdict,
    age,
    status_key,
    status_of_key,
)
from feeds.history.lookup import ItemReport, lookup_item
from feeds.state import item_lookup
from feeds.state.item_lookup import ItemRow
from worker.api.admin.endpoint import ERRORS, Admin, feed_name, iso_time, offset_links
from worker.api.admin.runs import RunOut, run_out
from worker.api.admin.sync_errors import ErrorOut, error_out
from worker.api.auth import get_context
from worker.api.errors import ApiError, sentence

router = APIRouter()


class LastRunOut(BaseModel):
    id: str
    status: str
    started_at: str
    finished_at: str | None
    age: str | None = Field(description="how long ago it finished, e.g. '12 min'")
    message: str | None


class FeedHealthOut(BaseModel):
    feed: str
    indexer_id: str
    title: str
    health: str = Field(description="green, amber or red (rules in docs/dashboard.md)")
    reasons: list[str]
    status: str = Field(description="the indexer status: Ready, Reindex required, …")
    update_on: str = Field(description="Save (realtime) or Schedule")
    mode: str
    schedule_status: str = Field(description="idle, working or suspended")
    backlog: int
    lag_s: float | None
    export_mode: str
    suspended: bool
    last_success: LastRunOut | None
    last_run: LastRunOut | None
    items: dict[str, int] = Field(description="feed-table rows per item status (never: not sent)")
    stuck: dict[str, int] = Field(description="status 2 and 0 items waiting over the threshold")


class FeedHealthList(BaseModel):
    results: list[FeedHealthOut]
    generated_at: str
    message: str


class ItemOut(BaseModel):
    feed: str
    id: str
    entity_key: int
    hash: str
    sent_hash: str | None
    deleted: bool
    modified_at: str
    status: str = Field(description="200, 400, 2, 0, -1 or never")
    attempts: int
    next_attempt_at: str | None
    error_code: str | None
    error_category: str | None
    error_message: str | None
    updated_at: str


class ItemList(BaseModel):
    feed: str
    status: str
    results: list[ItemOut]
    total: int
    limit: int
    offset: int
    message: str


class ItemReportOut(BaseModel):
    item: ItemOut
    errors: list[ErrorOut]
    runs: list[RunOut]
    document: object | None
    document_kept: bool


class LookupOut(BaseModel):
    query: str
    results: list[ItemReportOut]
    message: str


def _item_status(value: object) -> object:
    if isinstance(value, str):
        try:
            status_of_key(value)
        except ValueError:
            accepted = ", ".join(STATUS_KEYS)
            raise sentence(f"{value!r} is not an item status; accepted: {accepted}.") from None
    return value


ItemStatusParam = Annotated[
    str,
    BeforeValidator(_item_status),
    Query(description=f"the item status: {', '.join(STATUS_KEYS)} (never: never sent)"),
]


@router.get(
    "/feeds",
    response_model=FeedHealthList,
    responses=ERRORS,
    summary="Each feed's health: indexer, backlog and lag, last sync, items per status",
)
def list_feed_health(request: Request, key: Admin) -> FeedHealthList:
    ctx = get_context(request)
    now = utcnow()
    found = feed_health(ctx, now, counts=request.app.state.status_counts)
    results = [health_out(h.snapshot, h.verdict, now) for h in found]
    return FeedHealthList(results=results, generated_at=iso_time(now) or "", message="success")


@router.get(
    "/feeds/{feed}/items",
    response_model=ItemList,
    responses=ERRORS,
    summary="The items of one feed in one item status, by id",
)
def list_feed_items(
    request: Request,
    response: Response,
    key: Admin,
    feed: str,
    status: ItemStatusParam,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ItemList:
    ctx = get_context(request)
    name = feed_name(ctx, feed) or ""
    with ctx.db.connect() as conn:
        rows, total = item_lookup.items_page(
            conn, name, status_of_key(status), limit=limit, offset=offset
        )
    offset_links(request, response, limit, offset, total)
    return ItemList(
        feed=name,
        status=status,
        results=[item_out(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        message="success",
    )


@router.get(
    "/items",
    response_model=LookupOut,
    responses=ERRORS,
    summary="Look an item up by id or entity key across the feeds",
)
def find_item(
    request: Request,
    key: Admin,
    q: Annotated[
        str, Query(min_length=1, max_length=255, description="an item id, or an entity key")
    ],
) -> LookupOut:
    if not q.strip():
        raise ApiError(400, "The query parameter 'q' is empty; send an item id or an entity key.")
    reports = lookup_item(get_context(request), q)
    return LookupOut(query=q, results=[report_out(r) for r in reports], message="success")


def health_out(snap: FeedSnapshot, verdict: Verdict, now: datetime) -> FeedHealthOut:
    return FeedHealthOut(
        feed=snap.feed,
        indexer_id=snap.indexer_id,
        title=snap.title,
        health=verdict.health.value,
        reasons=list(verdict.reasons),
        status=snap.status_label,
        update_on=snap.update_on,
        mode=snap.mode.value,
        schedule_status=snap.view_status,
        backlog=snap.backlog,
        lag_s=None if snap.lag_s is None else round(snap.lag_s, 1),
        export_mode=snap.export_mode.value,
        suspended=snap.suspended,
        last_success=_last(snap.last_success, now),
        last_run=_last(snap.last_finished, now),
        items={status_key(s): snap.count(s) for s in ITEM_STATUSES},
        stuck={str(s): n for s, n in sorted(snap.stuck.items())},
    )


def _last(run: LastRun | None, now: datetime) -> LastRunOut | None:
    if run is None:
        return None
    finished = run.finished_at
    return LastRunOut(
        id=run.id,
        status=run.status.value,
        started_at=iso_time(run.started_at) or "",
        finished_at=iso_time(finished),
        age=age(finished, now),
        message=run.message,
    )


def item_out(row: ItemRow) -> ItemOut:
    return ItemOut.model_validate(
        {
            **asdict(row),
            "status": status_key(row.status),
            "modified_at": iso_time(row.modified_at),
            "next_attempt_at": iso_time(row.next_attempt_at),
            "updated_at": iso_time(row.updated_at),
        }
    )


def report_out(report: ItemReport) -> ItemReportOut:
    return ItemReportOut(
        item=item_out(report.item),
        errors=[error_out(e) for e in report.errors],
        runs=[run_out(r) for r in report.runs],
        document=report.document,
        document_kept=report.document_kept,
    )
