"""`GET /sync/usage`: the API calls made to each destination in the last 24 hours, against its
limit and this worker's allocation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from feeds.export import budget
from feeds.history.integrations import public_destination
from worker.api.admin.endpoint import ERRORS, Admin, iso_time
from worker.api.auth import get_context

router = APIRouter()


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
                    "window_start": iso_time(current.window_start),
                    "next_free_at": iso_time(current.next_free_at),
                    "resumes_at": iso_time(current.resumes_at),
                }
            )
        )
    return UsageList(results=results, message="success")
