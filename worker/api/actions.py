"""Operator actions on a feed, from the dashboard or the API (`sync.admin`): reindex (a full sync
queued as `POST /cdi/integrations/{id}/sync` queues it), resync (`saas:resync --feed`, queued the
same way), resync every current error of one category (queued, 100 errors per run), suspend,
resume, set the indexer's mode. Each is recorded in the audit log with the API key's name,
refusals included."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import structlog

from feeds.context import Context
from feeds.definitions import Feed, IndexerMode, IndexerStatus
from feeds.errors import FeedsyncError
from feeds.export.protocol import ErrorCategory
from feeds.history import audit, read_model
from feeds.history.feed_health import SUCCEEDED
from feeds.history.health import MODE_LABEL
from feeds.pipeline import indexer
from feeds.pipeline.resync_errors import MAX_RESYNC_ERRORS, current_error_ids
from feeds.state import indexer_state
from worker.api.apikeys import ApiKey
from worker.sync_requests import RequestedSync, SyncKind, SyncTrigger

log = structlog.get_logger("worker.api.actions")


class Action(StrEnum):
    REINDEX = "reindex"
    RESYNC = "resync"
    RESYNC_ERRORS = "resync_errors"
    SUSPEND = "suspend"
    RESUME = "resume"
    SET_MODE = "set_mode"


class ActionRefused(FeedsyncError):
    """An action that cannot be done as asked (e.g. set_mode without a mode)."""


@dataclass(frozen=True)
class ActionRequest:
    action: Action
    feed: Feed
    mode: IndexerMode | None = None  # set_mode only
    category: ErrorCategory | None = None  # resync_errors only


def perform(ctx: Context, trigger: SyncTrigger, key: ApiKey, request: ActionRequest) -> int:
    """Do the action and record it; returns the audit entry's id. A refusal (a FeedsyncError:
    the feed is held by another job, a missing mode) is recorded, then raised."""
    given = request.mode or request.category
    detail = given.value if given else None
    try:
        outcome = _do(ctx, trigger, request)
    except FeedsyncError as exc:
        _record(ctx, key, request, detail, f"Refused: {exc}")
        log.info(
            "action.refused", action=request.action.value, feed=request.feed.name, key_id=key.id
        )
        raise
    log.info("action.done", action=request.action.value, feed=request.feed.name, key_id=key.id)
    return _record(ctx, key, request, detail, outcome)


def _do(ctx: Context, trigger: SyncTrigger, request: ActionRequest) -> str:
    feed = request.feed
    if request.action is Action.REINDEX:
        trigger(ctx, feed)  # LockedError when a job of the feed is in progress
        return f"A reindex of {feed.title} was queued; its run shows in Sync runs when it starts."
    if request.action is Action.RESYNC:
        trigger(ctx, feed, RequestedSync(SyncKind.RESYNC))
        return (
            f"A full resync of {feed.title} was queued (every item is sent again, as "
            f"saas:resync --feed {feed.name} does); its run shows in Sync runs when it starts."
        )
    if request.action is Action.RESYNC_ERRORS:
        return _resync_errors(ctx, trigger, feed, request.category)
    if request.action is Action.SET_MODE:
        if request.mode is None:
            raise ActionRefused("set_mode needs a mode; accepted: realtime, schedule.")
        old = indexer.set_mode(ctx, feed, request.mode)
        if old is request.mode:
            return f"Index mode for Indexer {feed.title} has not been changed"
        return (
            f"Index mode for Indexer {feed.title} was changed from '{MODE_LABEL[old]}' "
            f"to '{MODE_LABEL[request.mode]}'"
        )
    # Suspend and resume are `indexer:set-status`, worded as it words them. Resume makes `valid`
    # only a feed that was built once (a run ended success or partial): a feed suspended before
    # its first reindex goes back to `invalid`, so that the reindex job still builds it.
    with ctx.db.begin() as conn:
        old_status = indexer_state.get_state(conn, feed.indexer_id).status
        if request.action is Action.SUSPEND:
            new = IndexerStatus.SUSPENDED
        elif read_model.latest_run(conn, feed.name, SUCCEEDED) is not None:
            new = IndexerStatus.VALID
        else:
            new = IndexerStatus.INVALID
        if request.action is Action.RESUME and old_status is not IndexerStatus.SUSPENDED:
            return f"Indexer '{feed.title}' is not suspended ({old_status.value}); nothing changed."
        if old_status is new:
            return f"Indexer '{feed.title}' is already suspended; nothing changed."
        indexer_state.set_status(conn, feed.indexer_id, new)
    return (
        f"Index status for Indexer '{feed.title}' was changed from '{old_status.value}' "
        f"to '{new.value}'."
    )


def _resync_errors(
    ctx: Context, trigger: SyncTrigger, feed: Feed, category: ErrorCategory | None
) -> str:
    if category is None:
        accepted = ", ".join(c.value for c in ErrorCategory)
        raise ActionRefused(f"resync_errors needs a category; accepted: {accepted}.")
    errors = len(current_error_ids(ctx, feed, category.value))
    if not errors:
        raise ActionRefused(
            f"{feed.name} has no current {category.value} errors; nothing to resync."
        )
    trigger(ctx, feed, RequestedSync(SyncKind.RESYNC_ERRORS, category.value))
    runs = -(-errors // MAX_RESYNC_ERRORS)
    return (
        f"A resync of the {errors:,} current {category.value} error{'' if errors == 1 else 's'} "
        f"of {feed.name} was queued: {runs} resync_errors run{'' if runs == 1 else 's'} of at "
        f"most {MAX_RESYNC_ERRORS}; they show in Sync runs as they start."
    )


def _record(
    ctx: Context, key: ApiKey, request: ActionRequest, detail: str | None, outcome: str
) -> int:
    with ctx.db.begin() as conn:
        return audit.record(
            conn,
            key_id=key.id,
            key_name=key.name,
            action=request.action.value,
            feed=request.feed.name,
            detail=detail,
            outcome=outcome,
        )


def record_setting(ctx: Context, key: ApiKey, action: str, detail: str | None, outcome: str) -> int:
    """Record a fleet-wide settings change (no feed) in the audit log; returns the entry's id."""
    log.info("settings.changed", action=action, key_id=key.id)
    with ctx.db.begin() as conn:
        return audit.record(
            conn,
            key_id=key.id,
            key_name=key.name,
            action=action,
            feed="",
            detail=detail,
            outcome=outcome,
        )
