"""Named locks in the worker database, shared by every process that uses it.

A lock has a TTL so that a worker that dies frees it by itself; the holder renews it while it works
(each batch), and learns that it lost the lock if someone took it over after it expired.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, select, update

from feeds.database import insert_for
from feeds.errors import FeedsyncError
from feeds.store import locks, utcnow

DEFAULT_TTL_S = 120.0
_ttl_s = DEFAULT_TTL_S


def configure(ttl_s: float) -> None:
    """The TTL of the locks this process takes from now on (`[fleet] feed_lock_ttl_s`)."""
    global _ttl_s
    _ttl_s = ttl_s


class LockedError(FeedsyncError):
    """The lock is held by another process."""


class LockLostError(FeedsyncError):
    """The lock expired and another process took it: the holder must stop."""


class Lock:
    def __init__(
        self, engine: Engine, name: str, ttl_s: float | None = None, owner: str | None = None
    ) -> None:
        """`owner` hands a held lock to another process (which then renews or releases it)."""
        self.engine = engine
        self.name = name
        self.ttl = timedelta(seconds=ttl_s or _ttl_s)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self) -> bool:
        now = utcnow()
        with self.engine.begin() as conn:
            insert = insert_for(conn.dialect.name, locks)
            # RETURNING, not rowcount: psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING.
            created = conn.execute(
                insert.values(
                    name=self.name, owner=self.owner, acquired_at=now, expires_at=now + self.ttl
                )
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(locks.c.name)
            ).first()
            if created is not None:
                return True
            taken = conn.execute(
                update(locks)
                .where(locks.c.name == self.name, locks.c.expires_at < now)
                .values(owner=self.owner, acquired_at=now, expires_at=now + self.ttl)
            ).rowcount
            return bool(taken)

    def renew(self) -> None:
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(locks)
                .where(locks.c.name == self.name, locks.c.owner == self.owner)
                .values(expires_at=utcnow() + self.ttl)
            ).rowcount
        if not renewed:
            raise LockLostError(
                f"Lost the lock {self.name!r}: it expired and another process took it."
            )

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                locks.delete().where(locks.c.name == self.name, locks.c.owner == self.owner)
            )


def is_locked(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        expires = conn.scalar(select(locks.c.expires_at).where(locks.c.name == name))
    return expires is not None and expires >= utcnow()


@contextmanager
def hold(engine: Engine, name: str, ttl_s: float | None = None) -> Iterator[Lock]:
    """Hold the lock for the block, or raise LockedError at once if another process has it."""
    lock = Lock(engine, name, ttl_s)
    if not lock.acquire():
        raise LockedError(f"{name} is locked by another process.")
    try:
        yield lock
    finally:
        lock.release()
