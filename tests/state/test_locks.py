"""Locks in the worker database: one holder at a time, TTL expiry frees a dead holder's lock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from feeds import definitions
from feeds.clock import utcnow
from feeds.context import Context
from feeds.errors import LockedError, LockLostError
from feeds.history import runs
from feeds.pipeline import indexer
from feeds.pipeline.run import lock_name
from feeds.state import feed_items as store
from feeds.state.locks import MACHINE, Lock, hold, is_locked
from feeds.state.tables import locks, sync_runs
from tests.conftest import library_context
from worker.testing.destination_server import DestinationServer


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
            other = Lock(ctx.db, lock_name(books), ttl_s=30)
            if other.acquire():
                # Taken from a run still in progress (not just freed as the reindex returned)?
                taken.append(running_runs_of(ctx, "books") > 0)
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
    assert True not in taken
    ctx.close()


def running_runs_of(ctx: Context, feed: str) -> int:
    with ctx.db.connect() as conn:
        query = select(sync_runs.c.id).where(
            sync_runs.c.feed == feed, sync_runs.c.status == "running"
        )
        return len(conn.execute(query).all())


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lock_of_a_holder_killed_on_this_machine_is_free_at_once(ctx: Context) -> None:
    killed = Lock(ctx.db, "job", owner=f"{MACHINE}:{dead_pid()}:deadbeef")
    assert killed.acquire()  # its TTL has not passed
    assert not is_locked(ctx.db, "job")
    assert Lock(ctx.db, "job").acquire()


def test_the_lock_of_a_holder_on_another_machine_waits_for_its_ttl(ctx: Context) -> None:
    elsewhere = Lock(ctx.db, "job", owner=f"other-host@1:{dead_pid()}:deadbeef")
    assert elsewhere.acquire()
    assert is_locked(ctx.db, "job") and not Lock(ctx.db, "job").acquire()
    expire(ctx, "job")
    assert Lock(ctx.db, "job").acquire()


def running_runs(ctx: Context) -> dict[str, tuple[str, str | None]]:
    with ctx.db.connect() as conn:
        rows = conn.execute(select(sync_runs.c.id, sync_runs.c.status, sync_runs.c.message))
        return {row.id: (row.status, row.message) for row in rows}


def test_a_run_whose_process_is_gone_is_closed_as_error_by_the_next_look(ctx: Context) -> None:
    alive = Lock(ctx.db, "indexer:a")
    killed = Lock(ctx.db, "indexer:b", owner=f"{MACHINE}:{dead_pid()}:deadbeef")
    elsewhere = Lock(ctx.db, "indexer:c", owner="other-host@1:4242:deadbeef")
    for lock, run_id in ((alive, "alive"), (killed, "killed"), (elsewhere, "elsewhere")):
        assert lock.acquire()
        runs.start_run(ctx.db, run_id, run_id, definitions.Operation.PARTIAL_SYNC, lock.owner)
    runs.start_run(ctx.db, "released", "d", definitions.Operation.PARTIAL_SYNC, "gone:1:deadbeef")

    assert runs.close_abandoned(ctx.db) == 2
    found = running_runs(ctx)
    assert found["alive"] == ("running", None)
    assert found["elsewhere"] == ("running", None)  # another machine's live lock: still running
    for run_id in ("killed", "released"):
        status, message = found[run_id]
        assert status == "error" and message == runs.ABANDONED

    expire(ctx, "indexer:c")  # the other machine stopped renewing
    assert runs.close_abandoned(ctx.db) == 1
    assert running_runs(ctx)["elsewhere"][0] == "error"


def test_a_new_run_under_the_feed_lock_closes_the_run_left_by_a_dead_process(
    ctx: Context,
) -> None:
    runs.start_run(
        ctx.db, "old", "products", definitions.Operation.FULL_SYNC, "other-host@1:1:dead"
    )
    lock = Lock(ctx.db, "indexer:catalog_data_exporter_products")
    assert lock.acquire()
    runs.start_run(ctx.db, "new", "products", definitions.Operation.PARTIAL_SYNC, lock.owner)
    found = running_runs(ctx)
    assert found["old"] == ("error", runs.ABANDONED) and found["new"] == ("running", None)


# -- the database goes away (a restart, a failover) ---------------------------------------------


def unreachable_for(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, attempts: int | None
) -> list[int]:
    """The next `attempts` transactions on the worker database (every one, with None) fail as with
    a server that is restarting; returns the list of failed attempts, as it grows."""
    begin = ctx.db.begin
    failed: list[int] = []

    def refused() -> object:
        if attempts is None or len(failed) < attempts:
            failed.append(1)
            raise OperationalError("BEGIN", {}, Exception("Connection refused"))
        return begin()

    monkeypatch.setattr(ctx.db, "begin", refused)
    return failed


def test_a_lock_is_released_once_the_database_is_back(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left held, a lock keeps its feed from every run for its TTL (2 minutes by default)."""
    lock = Lock(ctx.db, "job")
    assert lock.acquire()
    failed = unreachable_for(ctx, monkeypatch, 2)
    with structlog.testing.capture_logs() as logs:
        lock.release()
    assert len(failed) == 2 and not is_locked(ctx.db, "job")
    assert [e["event"] for e in logs] == ["database.waiting"]


def test_a_lock_left_by_a_database_away_for_longer_than_its_ttl_is_left_to_expire(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = Lock(ctx.db, "job", ttl_s=0.6)
    assert lock.acquire()
    unreachable_for(ctx, monkeypatch, None)
    started = time.monotonic()
    with pytest.raises(OperationalError):
        lock.release()
    assert time.monotonic() - started < 1.0


def test_a_run_cut_short_by_its_database_ends_error_once_it_is_back_and_frees_its_feed(
    db_url: str, destination: DestinationServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not `running` until a reader calls it abandoned: `error`, with the database's reason."""
    ctx = library_context(db_url, destination.url, tmp_path)
    books = ctx.registry.get("books")
    record = store.record_items
    failed: list[int] = []

    def server_restarting(*args: object, **kwargs: object) -> None:
        if destination.count("books") >= 6:  # the second round: the server goes away
            unreachable_for(ctx, monkeypatch, 3)
            failed.append(1)
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        record(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "record_items", server_restarting)
    with pytest.raises(OperationalError):
        indexer.reindex(ctx, books)
    [(status, message)] = running_runs(ctx).values()
    assert status == "error" and message and "server closed the connection" in message
    assert not is_locked(ctx.db, lock_name(books))
    ctx.close()
