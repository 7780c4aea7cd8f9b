"""`GET /sync/usage`: the API calls made to each destination in the last 24 hours, against its
limit and the allocation; `PUT /sync/usage`: the daily API-call allocation for every worker."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from feeds.context import Context
from feeds.export import allocation, budget
from feeds.history.integrations import public_destination
from worker.api.actions import record_setting
from worker.api.admin.endpoint import ERRORS, Admin, iso_time
from worker.api.auth import get_context

router = APIRouter()


class HourOut(BaseModel):
    start: str
    calls: int


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
    calls_per_hour: list[HourOut] = Field(
        description="calls per hour (UTC) over the 24-hour window, oldest first; [] for a file "
        "destination"
    )


class AllocationOut(BaseModel):
    calls: int | None = Field(description="calls per 24 h for the fleet; null: unlimited")
    source: str = Field(description="database (changed at runtime) or environment")
    default: int | None = Field(description="EXPORT_DAILY_CALL_ALLOCATION; null: unlimited")
    updated_at: str | None
    updated_by: str | None


class UsageList(BaseModel):
    results: list[UsageOut]
    allocation: AllocationOut
    message: str


class AllocationIn(BaseModel):
    # Any: the domain checks the value and says what is accepted (a float or a word alike).
    allocation: Any = Field(
        description=f"calls per 24 h (1 to {allocation.MAX_ALLOCATION:,}), null for unlimited, "
        "or 'default' for EXPORT_DAILY_CALL_ALLOCATION"
    )


@router.get(
    "/usage",
    response_model=UsageList,
    responses=ERRORS,
    summary="API calls to each destination in the last 24 hours, with the limit and allocation",
)
def api_usage(request: Request, key: Admin) -> UsageList:
    return _usage(get_context(request))


@router.put(
    "/usage",
    response_model=UsageList,
    responses=ERRORS,
    summary="Set the daily API-call allocation for every worker (recorded in the audit log)",
)
def put_usage(request: Request, body: AllocationIn, key: Admin) -> UsageList:
    ctx = get_context(request)
    changed = allocation.change(ctx, body.allocation, by=key.name)
    record_setting(
        ctx, key, "set_allocation", _shown(body.allocation), allocation.describe(changed)
    )
    return _usage(ctx)


def _shown(value: Any) -> str:
    return "unlimited" if value in (None, "") else str(value)


def _usage(ctx: Context) -> UsageList:
    results = []
    for current in budget.usage_by_destination(ctx):
        results.append(
            UsageOut.model_validate(
                {
                    **current.as_dict(),
                    "destination": public_destination(current.destination),
                    "window_start": iso_time(current.window_start),
                    "next_free_at": iso_time(current.next_free_at),
                    "resumes_at": iso_time(current.resumes_at),
                    "calls_per_hour": [
                        {"start": iso_time(start), "calls": calls}
                        for start, calls in (
                            budget.calls_per_hour(ctx, current.destination)
                            if current.counted
                            else []
                        )
                    ],
                }
            )
        )
    now = allocation.current(ctx)
    return UsageList(
        results=results,
        allocation=AllocationOut(
            calls=now.calls,
            source=now.source,
            default=now.default,
            updated_at=iso_time(now.updated_at),
            updated_by=now.updated_by,
        ),
        message="success",
    )
