"""What a sync requested through the API does when it fails: the fleet's task raises (Celery marks
it failed, see tests/worker/test_fleet.py), the embedded thread logs it; both free the request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from feeds.context import Context
from feeds.history import read_model
from tests.conftest import library_context
from worker.sync_requests import (
    BackgroundSync,
    RequestedSync,
    RequestedSyncFailed,
    SyncKind,
    run_requested_sync,
    take_request_lock,
    trigger_for,
)
from worker.testing.destination_server import DestinationServer


@pytest.fixture
def library(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


def test_a_requested_sync_the_destination_refuses_raises_once_its_request_is_freed(
    library: Context, destination: DestinationServer
) -> None:
    books = library.registry.get("books")
    destination.fail_next(1000, status=401)
    with pytest.raises(RequestedSyncFailed, match="The requested sync of books ended config_error"):
        run_requested_sync(library, books, take_request_lock(library, books))
    take_request_lock(library, books).release()  # free: a new request is accepted


def test_a_requested_sync_that_succeeds_returns_its_run(
    library: Context, destination: DestinationServer
) -> None:
    books = library.registry.get("books")
    run_ids = run_requested_sync(library, books, take_request_lock(library, books))
    assert run_ids is not None and len(run_ids) == 1
    with library.db.connect() as conn:
        run = read_model.get_run(conn, run_ids[0])
    assert run is not None and run.rows_synced == 12 and run.operation == "full_sync"
    assert len(destination.accepted_ids("books")) == 12


def test_a_requested_full_resync_sends_every_item_again_where_a_reindex_sends_none(
    library: Context, destination: DestinationServer
) -> None:
    books = library.registry.get("books")
    run_requested_sync(library, books, take_request_lock(library, books))
    destination.reset()
    run_requested_sync(library, books, take_request_lock(library, books))
    assert destination.accepted_ids("books") == set()  # a reindex: nothing changed, nothing sent
    resync = RequestedSync(SyncKind.RESYNC)
    [run_id] = run_requested_sync(library, books, take_request_lock(library, books), resync) or []
    assert len(destination.accepted_ids("books")) == 12
    with library.db.connect() as conn:
        run = read_model.get_run(conn, run_id)
    assert run is not None and (run.status, run.rows_synced) == ("success", 12)
    take_request_lock(library, books).release()  # the request lock was freed


def test_the_embedded_trigger_logs_a_failed_sync(
    library: Context, destination: DestinationServer
) -> None:
    books = library.registry.get("books")
    destination.fail_next(1000, status=401)
    trigger = BackgroundSync()
    with capture_logs() as logs:
        trigger(library, books)
        assert trigger.join(30) == []
    [failed] = [e for e in logs if e["event"] == "api.sync_failed"]
    assert failed["feed"] == "books" and failed["log_level"] == "error"
    take_request_lock(library, books).release()


def test_without_a_broker_requested_syncs_run_in_a_thread_of_the_api_process(
    library: Context,
) -> None:
    assert library.settings.broker_url is None
    assert isinstance(trigger_for(library.settings), BackgroundSync)
