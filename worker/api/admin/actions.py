"""`POST /sync/feeds/{feed}/actions` (reindex, resync, resync_errors, suspend, resume, set_mode; recorded in the audit log
with the key's name) and `GET /sync/audit` (the log, newest first)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from feeds.definitions import IndexerMode
from feeds.export.protocol import ErrorCategory
from feeds.history import audit
from feeds.history.audit import AuditEntry
from worker.api.actions import Action, ActionRequest, perform
from worker.api.admin.endpoint import ERRORS, Admin, feed_name, iso_time, offset_links
from worker.api.auth import get_context
from worker.api.cdi import Message

router = APIRouter()


class ActionIn(BaseModel):
    action: Action = Field(
        description="reindex, resync, resync_errors, suspend, resume or set_mode"
    )
    mode: IndexerMode | None = Field(
        default=None, description="set_mode only: realtime or schedule"
    )
    category: ErrorCategory | None = Field(
        default=None,
        description="resync_errors only: the category whose current errors are all resynced",
    )


class AuditOut(BaseModel):
    id: int
    at: str
    key_id: int
    key_name: str
    action: str
    feed: str
    detail: str | None
    outcome: str


class AuditList(BaseModel):
    results: list[AuditOut]
    total: int
    limit: int
    offset: int
    message: str


@router.post(
    "/feeds/{feed}/actions",
    response_model=AuditOut,
    responses={
        **ERRORS,
        409: {
            "model": Message,
            "description": "A job of the feed is in progress (reindex, resync, resync_errors)",
        },
    },
    summary="Reindex or resync a feed, resync every error of a category, suspend, resume, set "
    "the indexer's mode; recorded in the audit log",
)
def feed_action(request: Request, key: Admin, feed: str, body: ActionIn) -> AuditOut:
    ctx = get_context(request)
    chosen = ctx.registry.get(feed_name(ctx, feed) or "")
    entry_id = perform(
        ctx,
        request.app.state.trigger,
        key,
        ActionRequest(body.action, chosen, body.mode, body.category),
    )
    with ctx.db.connect() as conn:
        done = audit.entry(conn, entry_id)
    assert done is not None
    return audit_out(done)


@router.get("/audit", response_model=AuditList, responses=ERRORS, summary="Operator actions")
def list_audit(
    request: Request,
    response: Response,
    key: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditList:
    ctx = get_context(request)
    with ctx.db.connect() as conn:
        rows, total = audit.recent(conn, limit=limit, offset=offset)
    offset_links(request, response, limit, offset, total)
    return AuditList(
        results=[audit_out(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        message="success",
    )


def audit_out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id,
        at=iso_time(entry.at) or "",
        key_id=entry.key_id,
        key_name=entry.key_name,
        action=entry.action,
        feed=entry.feed,
        detail=entry.detail,
        outcome=entry.outcome,
    )
