"""Integrations (SPEC §1, §7): each feed bound to its destination, with a stable UUID, its modes,
its last job and when the scheduler next syncs it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select

from feeds.clock import utcnow
from feeds.context import Context, Plan
from feeds.definitions import ExportMode, Feed, IndexerMode, IndexerStatus, RunStatus
from feeds.history import runs
from feeds.schedule import FIXED_JOBS, next_fire
from feeds.state import indexer_state
from feeds.state.tables import sync_runs

# Fixed forever: integration ids derive from it, and clients keep them.
NAMESPACE = uuid.UUID("5d0c3f36-8a7e-4f0b-9d8e-4f6565647379")


@dataclass(frozen=True)
class Integration:
    id: uuid.UUID
    feed: Feed
    destination: str
    export_mode: ExportMode
    indexer_mode: IndexerMode
    last_job_start_time: datetime | None
    last_job_status: str | None
    next_scheduled_run: datetime | None


def integration_id(feed: str, destination_url: str) -> uuid.UUID:
    """The same feed and destination always give the same id; another destination, another id."""
    return uuid.uuid5(NAMESPACE, f"{feed}\n{destination_url}")


def public_destination(url: str) -> str:
    """The destination URL as shown to people: without user info or query (they may hold credentials)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def job_status(status: str) -> str:
    """A run status as the job-sync-status API reports it: a rolled-back run is an `error`."""
    return RunStatus.ERROR.value if status == RunStatus.ROLLED_BACK.value else status


def list_integrations(ctx: Context, now: datetime | None = None) -> list[Integration]:
    """Every integration, newest job first (feeds never synced last, by name)."""
    now = now or utcnow()
    runs.close_abandoned(ctx.db)  # never report a run of a dead process as running
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
        last = {
            feed.name: conn.execute(
                select(sync_runs.c.started_at, sync_runs.c.status)
                .where(sync_runs.c.feed == feed.name)
                .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
                .limit(1)
            ).first()
            for feed in ctx.registry
        }
    found = []
    for feed in ctx.registry:
        url = ctx.plan.feed(feed.name).destination
        state = states[feed.indexer_id]
        run = last[feed.name]
        export_mode = ctx.plan.feed(feed.name).export_mode
        found.append(
            Integration(
                id=integration_id(feed.name, url),
                feed=feed,
                destination=public_destination(url),
                export_mode=export_mode,
                indexer_mode=state.mode,
                last_job_start_time=run.started_at if run else None,
                last_job_status=job_status(run.status) if run else None,
                next_scheduled_run=_next_run(
                    ctx.plan, feed, state.status, state.mode, export_mode, now
                ),
            )
        )
    found.sort(key=order_key)
    return found


def order_key(integration: Integration) -> tuple[int, float, str]:
    """Ascending order of this key is the list's order: newest job first, never-run last, by name."""
    started = integration.last_job_start_time
    if started is None:
        return (1, 0.0, integration.feed.name)
    return (0, -started.timestamp(), integration.feed.name)


def find(ctx: Context, integration: str) -> Feed | None:
    """The feed of an integration id (any text), or None when it is not one of ours."""
    try:
        wanted = uuid.UUID(integration)
    except (ValueError, AttributeError, TypeError):
        return None
    for feed in ctx.registry:
        if integration_id(feed.name, ctx.plan.feed(feed.name).destination) == wanted:
            return feed
    return None


def _next_run(
    plan: Plan,
    feed: Feed,
    status: IndexerStatus,
    mode: IndexerMode,
    export_mode: ExportMode,
    now: datetime,
) -> datetime | None:
    """When the job that sends this feed's changes runs next (None: suspended, realtime mode, or
    the job's group disabled)."""
    if status is IndexerStatus.SUSPENDED:
        return None
    if status is not IndexerStatus.VALID:
        job = "indexer_reindex_all_invalid"
    elif export_mode is ExportMode.LEGACY:
        job = "sales_data_exporter" if feed.sales else "saas_data_exporter"
    elif mode is IndexerMode.SCHEDULE:
        job = "indexer_update_all_views"
    else:
        return None
    group = next(j.group for j in FIXED_JOBS if j.name == job)
    if group in plan.disabled_groups:
        return None  # its group is off the schedule: nothing will run it
    return next_fire(plan.cron(job), now)
