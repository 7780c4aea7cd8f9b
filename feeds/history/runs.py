"""Sync runs and sync errors (SPEC §6): every operation on a feed is a run with counters and a status;
every item that failed in a run is an error row with its category.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Engine,
    and_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from feeds.clock import utcnow
from feeds.definitions import ItemStatus, Operation, RunStatus
from feeds.export.protocol import ItemResult
from feeds.state.locks import live_owners
from feeds.state.tables import sync_errors, sync_runs


@dataclass
class Counts:
    """What one operation did, item by item: the counters of its run."""

    new: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    rows_synced: int = 0
    last_timestamp_synced: datetime | None = None
    # Items the API-call budget kept from being sent (status -1, resent later); not a column.
    deferred: int = 0
    # Of `failed`, those the destination rejected (400: not resent until they change); not a column.
    rejected: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for name in _ADDED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.last_timestamp_synced and (
            self.last_timestamp_synced is None
            or other.last_timestamp_synced > self.last_timestamp_synced
        ):
            self.last_timestamp_synced = other.last_timestamp_synced
        return self

    def as_dict(self) -> dict[str, int]:
        return {
            name: getattr(self, name) for name in ("new", "updated", "deleted", "skipped", "failed")
        }


_ADDED = ("new", "updated", "deleted", "skipped", "failed", "rows_synced", "deferred", "rejected")


def status_for(counts: Counts, config_error: str | None = None) -> RunStatus:
    """`config_error` when the destination refused us; `partial` when the API-call budget paused
    sending or some items failed; `error` when items failed and none synced."""
    if config_error:
        return RunStatus.CONFIG_ERROR
    if counts.deferred:
        return RunStatus.PARTIAL
    if counts.failed == 0:
        return RunStatus.SUCCESS
    if counts.rows_synced == 0:
        return RunStatus.ERROR
    return RunStatus.PARTIAL


BUILD_FAILED = "BUILD_FAILED"  # the code of an entity the feed's builder raised on


def start_run(engine: Engine, run_id: str, feed: str, operation: Operation, owner: str) -> None:
    """Record a run as `running`; `owner` is the owner of the feed lock the run holds throughout.

    Holding that lock, the run is the only live one of its feed: any other `running` run of the
    feed was left by a process that died, and is closed here as `error`.
    """
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            update(sync_runs)
            .where(sync_runs.c.feed == feed, sync_runs.c.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.ERROR.value, finished_at=now, message=ABANDONED)
        )
        conn.execute(
            sync_runs.insert().values(
                id=run_id,
                feed=feed,
                operation=operation.value,
                status=RunStatus.RUNNING.value,
                started_at=now,
                owner=owner,
            )
        )


ABANDONED = (
    "abandoned: the process running it stopped before the run finished (killed, or its host "
    "lost); what it had recorded stays, the rest is sent by the next runs"
)


def close_abandoned(engine: Engine) -> int:
    """Close as `error` every `running` run whose process is gone: its owner no longer holds its
    feed's lock (released, expired, or its process is dead). Returns how many were closed.

    Any job or reader may call it: a live run renews its lock after every batch.
    """
    c = sync_runs.c
    with engine.connect() as conn:
        running = conn.execute(
            select(c.id, c.owner).where(c.status == RunStatus.RUNNING.value, c.owner.is_not(None))
        ).all()
    if not running:
        return 0
    alive = live_owners(engine, {row.owner for row in running})
    gone = [row.id for row in running if row.owner not in alive]
    if not gone:
        return 0
    with engine.begin() as conn:
        return int(
            conn.execute(
                update(sync_runs)
                .where(c.id.in_(gone), c.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.ERROR.value, finished_at=utcnow(), message=ABANDONED)
            ).rowcount
        )


def finish_run(
    engine: Engine, run_id: str, counts: Counts, status: RunStatus, message: str | None = None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(sync_runs)
            .where(sync_runs.c.id == run_id)
            .values(
                status=status.value,
                finished_at=utcnow(),
                new=counts.new,
                updated=counts.updated,
                deleted=counts.deleted,
                failed=counts.failed,
                skipped=counts.skipped,
                rows_synced=counts.rows_synced,
                rows_failed_with_errors=counts.failed,
                last_timestamp_synced=counts.last_timestamp_synced,
                message=message,
            )
        )


def failure_note(engine: Engine, run_id: str, failed: int) -> str:
    """Why a run synced nothing, in one line: how many items failed and the first error recorded
    (from the database, so it covers the batches other processes did for the run)."""
    c = sync_errors.c
    with engine.connect() as conn:
        first = conn.execute(
            select(c.item_id, c.code, c.message).where(c.run_id == run_id).order_by(c.id).limit(1)
        ).first()
    note = f"{failed} items failed, none was synced"
    if first is None:
        return note
    return f"{note}; first: item {first.item_id}: {first.code}: {first.message}"[:2000]


def record_errors(conn: Connection, run_id: str, feed: str, results: Sequence[ItemResult]) -> None:
    """One error row per failed item of the run; an item sent now resolves its earlier errors.

    An item the API-call budget kept back (-1) was not sent and did not fail: no row, nothing resolved.
    """
    now = utcnow()
    failed = [r for r in results if r.status not in (ItemStatus.SENT, ItemStatus.SKIPPED)]
    sent = [r.id for r in results if r.status is ItemStatus.SENT]
    # The probe spares an UPDATE with a thousand ids per round when nothing is open, as in
    # most rounds: on PostgreSQL that UPDATE was a sixth of a full sync's time.
    if sent and _has_open_errors(conn, feed):
        resolve(conn, feed, sent, now)
    if not failed:
        return
    earlier = {
        item_id: (first_seen, attempts)
        for item_id, first_seen, attempts in conn.execute(
            select(sync_errors.c.item_id, sync_errors.c.first_seen, sync_errors.c.attempts).where(
                sync_errors.c.feed == feed,
                sync_errors.c.resolved.is_(False),
                sync_errors.c.item_id.in_([r.id for r in failed]),
            )
        )
    }
    conn.execute(
        sync_errors.insert(),
        [
            {
                "run_id": run_id,
                "feed": feed,
                "item_id": r.id,
                "category": str(r.category or "other"),
                "code": r.code,
                "message": r.message,
                "field": r.field,
                "value": r.value,
                "first_seen": earlier.get(r.id, (now, 0))[0],
                "last_seen": now,
                "attempts": earlier.get(r.id, (now, 0))[1] + 1,
                "resolved": False,
            }
            for r in failed
        ],
    )
    # The older rows of the same items are superseded by the new ones.
    old = [r.id for r in failed if r.id in earlier]
    if old:
        conn.execute(
            update(sync_errors)
            .where(
                and_(
                    sync_errors.c.feed == feed,
                    sync_errors.c.item_id.in_(old),
                    sync_errors.c.run_id != run_id,
                    sync_errors.c.resolved.is_(False),
                )
            )
            .values(resolved=True, resolved_at=now)
        )


def resolve_build_failures(conn: Connection, feed: str, entities: Iterable[int]) -> None:
    """Resolve the BUILD_FAILED errors of entities that built now (their rows name the entity:
    an entity that never built has no item id)."""
    if not _has_open_errors(conn, feed):
        return
    conn.execute(
        update(sync_errors)
        .where(
            sync_errors.c.feed == feed,
            sync_errors.c.code == BUILD_FAILED,
            sync_errors.c.resolved.is_(False),
            sync_errors.c.item_id.in_([str(entity) for entity in entities]),
        )
        .values(resolved=True, resolved_at=utcnow())
    )


def _has_open_errors(conn: Connection, feed: str) -> bool:
    probe = select(sync_errors.c.id).where(
        sync_errors.c.feed == feed, sync_errors.c.resolved.is_(False)
    )
    return conn.execute(probe.limit(1)).first() is not None


def resolve(
    conn: Connection, feed: str, item_ids: Sequence[str], now: datetime | None = None
) -> None:
    conn.execute(
        update(sync_errors)
        .where(
            sync_errors.c.feed == feed,
            sync_errors.c.item_id.in_(list(item_ids)),
            sync_errors.c.resolved.is_(False),
        )
        .values(resolved=True, resolved_at=now or utcnow())
    )


def remove_history(
    engine: Engine, retention_days: int, now: datetime | None = None
) -> tuple[int, int]:
    """`sync_history_cleanup`: drop finished runs and resolved errors older than the retention.

    Unresolved errors stay whatever their age: they are still true.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with engine.begin() as conn:
        removed_runs = conn.execute(
            sync_runs.delete().where(
                sync_runs.c.started_at < cutoff, sync_runs.c.status != RunStatus.RUNNING.value
            )
        ).rowcount
        removed_errors = conn.execute(
            sync_errors.delete().where(
                sync_errors.c.resolved.is_(True), sync_errors.c.last_seen < cutoff
            )
        ).rowcount
    return removed_runs, removed_errors


# --- queries of the HTTP API and dashboard -------------------------------------------------
