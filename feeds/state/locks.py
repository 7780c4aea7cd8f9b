"""Named locks in the worker database, shared by every process that uses it.

A lock has a TTL so that a worker that dies frees it by itself; the holder renews it while it works
(each batch), and learns that it lost the lock if someone took it over after it expired. A lock
whose holder ran on this machine and is known dead (kill -9) is free at once, TTL or not.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, select, update

from feeds.clock import utcnow
from feeds.errors import LockedError, LockLostError
from feeds.state.database import insert_for, while_unreachable
from feeds.state.tables import locks

DEFAULT_TTL_S = 120.0
_ttl_s = DEFAULT_TTL_S


def configure(ttl_s: float) -> None:
    """The TTL of the locks this process takes from now on (`[fleet] feed_lock_ttl_s`)."""
    global _ttl_s
    _ttl_s = ttl_s


def ttl_s() -> float:
    """The TTL of the locks this process takes."""
    return _ttl_s


class Lock:
    def __init__(
        self, engine: Engine, name: str, ttl_s: float | None = None, owner: str | None = None
    ) -> None:
        """`owner` hands a held lock to another process (which then renews or releases it)."""
        self.engine = engine
        self.name = name
        self.ttl = timedelta(seconds=ttl_s or _ttl_s)
        self.owner = owner or f"{MACHINE}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # time.monotonic() when the lock expires unless renewed (as this process knows it).
        self.valid_until = time.monotonic()

    def acquire(self) -> bool:
        started = time.monotonic()
        taken = self._take()
        if taken:
            self.valid_until = started + self.ttl.total_seconds()
        return taken

    def _take(self) -> bool:
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
            if taken:
                return True
            holder = conn.scalar(select(locks.c.owner).where(locks.c.name == self.name))
            if holder is None or not is_dead(holder):
                return False
            # Its holder was killed on this machine: no need to wait for the TTL.
            taken = conn.execute(
                update(locks)
                .where(locks.c.name == self.name, locks.c.owner == holder)
                .values(owner=self.owner, acquired_at=now, expires_at=now + self.ttl)
            ).rowcount
            return bool(taken)

    def renew(self) -> None:
        started = time.monotonic()
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
        self.valid_until = started + self.ttl.total_seconds()

    def renew_if_due(self) -> None:
        """Renew unless the last renewal was a moment ago (less than a tenth of the lease). A
        renewal is a committed write, ~4 ms on PostgreSQL: done every round of a fast full sync,
        it was a tenth of its time. Each renewal must still come within one lease of the last; a
        skipped one leaves at least 90% of the lease for the next round."""
        if time.monotonic() >= self.valid_until - self.ttl.total_seconds() * 0.9:
            self.renew()

    def release(self) -> None:
        """Free the lock. While the database cannot be reached (a restart), try again until the
        lock would expire anyway: left held, it would keep its feed from every run until then."""

        def delete() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    locks.delete().where(locks.c.name == self.name, locks.c.owner == self.owner)
                )

        while_unreachable(delete, until=self.valid_until, what=f"release of the lock {self.name}")


def is_locked(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        row = conn.execute(
            select(locks.c.owner, locks.c.expires_at).where(locks.c.name == name)
        ).first()
    return row is not None and row.expires_at >= utcnow() and not is_dead(row.owner)


def live_owners(engine: Engine, owners: Collection[str]) -> set[str]:
    """The owners among `owners` that hold a lock now: not expired, and not known dead."""
    if not owners:
        return set()
    with engine.connect() as conn:
        held = conn.scalars(
            select(locks.c.owner).where(
                locks.c.owner.in_(list(owners)), locks.c.expires_at >= utcnow()
            )
        )
        return {owner for owner in held if not is_dead(owner)}


def _machine() -> str:
    """This machine as lock owners name it: the host name, and the PID namespace when there is one
    (two containers may share a host name, never a PID namespace)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}@{namespace}"


MACHINE = _machine()


def is_dead(owner: str) -> bool:
    """Whether the owner's process ran on this machine and has ended (another machine's: unknown)."""
    machine, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if machine != MACHINE or not pid_text.isdigit():
        return False
    return not process_alive(int(pid_text))


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass  # no /proc: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def hold(
    engine: Engine,
    name: str,
    ttl_s: float | None = None,
    *,
    wait_s: float = 0.0,
    busy: LockedError | None = None,
) -> Iterator[Lock]:
    """Hold the lock for the block; when another process has it, wait up to `wait_s` for it, then
    raise `busy` (a LockedError naming the lock by default)."""
    lock = Lock(engine, name, ttl_s)
    deadline = time.monotonic() + wait_s
    while not lock.acquire():
        if time.monotonic() >= deadline:
            raise busy or LockedError(f"{name} is locked by another process.")
        time.sleep(0.2)
    try:
        yield lock
    finally:
        lock.release()
