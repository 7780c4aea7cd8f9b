"""Indexer state: status, mode and changelog version per indexer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.engine import Connection

from feeds.clock import utcnow
from feeds.definitions import IndexerMode, IndexerStatus
from feeds.state.database import insert_for
from feeds.state.tables import states


@dataclass(frozen=True)
class State:
    indexer_id: str
    status: IndexerStatus
    mode: IndexerMode
    version_id: int
    updated_at: datetime


def ensure_states(conn: Connection, initial_modes: dict[str, IndexerMode]) -> None:
    """Create the state of every indexer not seen before: `invalid` (a first full reindex is due)."""
    known = set(conn.scalars(select(states.c.indexer_id)))
    now = utcnow()
    rows = [
        {
            "indexer_id": indexer_id,
            "status": IndexerStatus.INVALID.value,
            "mode": mode.value,
            "version_id": 0,
            "updated_at": now,
        }
        for indexer_id, mode in initial_modes.items()
        if indexer_id not in known
    ]
    if rows:
        # Two processes starting on a new database at once both find the state missing.
        insert = insert_for(conn.dialect.name, states)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["indexer_id"]), rows)


def get_state(conn: Connection, indexer_id: str) -> State:
    row = conn.execute(select(states).where(states.c.indexer_id == indexer_id)).one()
    return State(
        row.indexer_id,
        IndexerStatus(row.status),
        IndexerMode(row.mode),
        row.version_id,
        row.updated_at,
    )


def all_states(conn: Connection) -> dict[str, State]:
    return {
        row.indexer_id: State(
            row.indexer_id,
            IndexerStatus(row.status),
            IndexerMode(row.mode),
            row.version_id,
            row.updated_at,
        )
        for row in conn.execute(select(states))
    }


def set_status(conn: Connection, indexer_id: str, status: IndexerStatus) -> None:
    conn.execute(
        update(states)
        .where(states.c.indexer_id == indexer_id)
        .values(status=status.value, updated_at=utcnow())
    )


def set_mode(
    conn: Connection, indexer_id: str, mode: IndexerMode, version_id: int | None = None
) -> None:
    values: dict[str, object] = {"mode": mode.value, "mode_updated_at": utcnow()}
    if version_id is not None:
        values["version_id"] = version_id
    conn.execute(update(states).where(states.c.indexer_id == indexer_id).values(**values))


def set_version(conn: Connection, indexer_id: str, version_id: int) -> None:
    """Advance the changelog pointer; `updated_at` is what `indexer:status` shows as Schedule Updated."""
    conn.execute(
        update(states)
        .where(states.c.indexer_id == indexer_id)
        .values(version_id=version_id, updated_at=utcnow())
    )
