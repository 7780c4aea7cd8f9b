"""The audit log of operator actions: who (the API key's id and name) did what to which feed,
when, and how it ended. Written by the delivery (dashboard and API), read by both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from feeds.clock import utcnow
from feeds.state.tables import audit_log


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    key_id: int
    key_name: str
    action: str
    feed: str
    detail: str | None
    outcome: str


def record(
    conn: Connection,
    *,
    key_id: int,
    key_name: str,
    action: str,
    feed: str,
    detail: str | None,
    outcome: str,
) -> int:
    """Add an entry; returns its id."""
    result = conn.execute(
        audit_log.insert().values(
            at=utcnow(),
            key_id=key_id,
            key_name=key_name,
            action=action,
            feed=feed,
            detail=detail,
            outcome=outcome,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def entry(conn: Connection, entry_id: int) -> AuditEntry | None:
    row = conn.execute(select(audit_log).where(audit_log.c.id == entry_id)).mappings().first()
    return None if row is None else AuditEntry(**row)


def recent(conn: Connection, *, limit: int = 100, offset: int = 0) -> tuple[list[AuditEntry], int]:
    """The newest entries first, and how many there are."""
    c = audit_log.c
    total = int(conn.scalar(select(func.count()).select_from(audit_log)) or 0)
    query = select(audit_log).order_by(c.at.desc(), c.id.desc()).limit(limit).offset(offset)
    return [AuditEntry(**row) for row in conn.execute(query).mappings()], total
