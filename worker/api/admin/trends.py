"""`GET /sync/trends`: items synced, failed and skipped per hour over 24 hours or per day over 5
days, for every feed together or one, summed from the runs' counters."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from feeds.clock import utcnow
from feeds.history import trends
from feeds.history.trends import Bucket
from worker.api.admin.endpoint import ERRORS, Admin, feed_name, iso_time
from worker.api.auth import get_context

router = APIRouter()


class TrendWindow(StrEnum):
    LAST_24_HOURS = "24h"
    LAST_5_DAYS = "5d"

    @property
    def window(self) -> trends.Window:
        return trends.LAST_24_HOURS if self is TrendWindow.LAST_24_HOURS else trends.LAST_5_DAYS


class BucketOut(BaseModel):
    start: str
    synced: int
    failed: int
    skipped: int


class TrendOut(BaseModel):
    window: str
    step: str
    feed: str | None
    results: list[BucketOut]
    message: str


@router.get(
    "/trends",
    response_model=TrendOut,
    responses=ERRORS,
    summary="Items synced, failed and skipped per hour (24 h) or per day (5 days)",
)
def get_trends(
    request: Request,
    key: Admin,
    window: Annotated[
        TrendWindow, Query(description="24h: per hour, the last 24; 5d: per day, the last 5")
    ] = TrendWindow.LAST_24_HOURS,
    feed: str | None = None,
) -> TrendOut:
    ctx = get_context(request)
    name = feed_name(ctx, feed)
    now = utcnow()
    chosen = window.window
    with ctx.db.connect() as conn:
        series = trends.per_feed(conn, chosen, now, name)
    buckets = trends.combined(list(series.values()), chosen.buckets(now))
    return TrendOut(
        window=window.value,
        step=chosen.step.value,
        feed=name,
        results=[bucket_out(b) for b in buckets],
        message="success",
    )


def bucket_out(bucket: Bucket) -> BucketOut:
    return BucketOut(
        start=iso_time(bucket.start) or "",
        synced=bucket.synced,
        failed=bucket.failed,
        skipped=bucket.skipped,
    )
