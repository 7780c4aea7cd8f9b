"""Locks in the worker database: one holder at a time, TTL expiry frees a dead holder's lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from feeds.context import Context
from feeds.locks import Lock, LockedError, LockLostError, hold, is_locked
from feeds.store import locks, utcnow


def expire(ctx: Context, name: str) -> None:
    with ctx.db.begin() as conn:
        conn.execute(
            update(locks)
            .where(locks.c.name == name)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


def test_second_holder_is_refused_while_the_first_holds(ctx: Context) -> None:
    first = Lock(ctx.db, "job")
    assert first.acquire()
    assert not Lock(ctx.db, "job").acquire()
    assert is_locked(ctx.db, "job")
    first.release()
    assert not is_locked(ctx.db, "job")
    assert Lock(ctx.db, "job").acquire()


def test_expired_lock_of_a_dead_holder_is_taken_over(ctx: Context) -> None:
    dead = Lock(ctx.db, "job")
    assert dead.acquire()
    expire(ctx, "job")
    assert not is_locked(ctx.db, "job")
    assert Lock(ctx.db, "job").acquire()
    with pytest.raises(LockLostError):
        dead.renew()


def test_hold_raises_when_locked_and_frees_on_exit(ctx: Context) -> None:
    with hold(ctx.db, "job"), pytest.raises(LockedError), hold(ctx.db, "job"):
        pass
    assert not is_locked(ctx.db, "job")
