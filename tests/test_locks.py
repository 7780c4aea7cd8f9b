"""Locks in the worker database: one holder at a time, TTL expiry frees a dead holder's lock."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from feeds import indexer
from feeds.context import Context
from feeds.locks import Lock, LockedError, LockLostError, hold, is_locked
from feeds.store import locks, utcnow
from tests.conftest import library_context
from tests.destination_server import DestinationServer


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


def test_a_slow_destination_does_not_let_the_indexer_lock_expire_mid_batch(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    # A 1 s lock; one collected batch of 6 books is two rounds of 3, each answered in 0.7 s:
    # renewed only per collected batch, the lock would lapse inside the batch.
    ctx = library_context(
        db_url, destination.url, tmp_path, books=12, extra="[fleet]\nfeed_lock_ttl_s = 1\n"
    )
    books = ctx.registry.get("books")
    destination.slow_next(4, 0.7)
    taken: list[bool] = []
    done = threading.Event()

    def another_process() -> None:
        while not done.wait(0.05):
            other = Lock(ctx.db, indexer.lock_name(books), ttl_s=30)
            if other.acquire():
                taken.append(True)
                other.release()
                return

    thief = threading.Thread(target=another_process)
    thief.start()
    try:
        outcome = indexer.reindex(ctx, books)
    finally:
        done.set()
        thief.join()
    assert outcome.counts.rows_synced == 12
    assert taken == []
    ctx.close()
