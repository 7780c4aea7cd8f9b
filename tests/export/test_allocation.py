"""The daily API-call allocation changed at runtime (`feeds.export.allocation`): stored in the
worker database for the whole fleet, EXPORT_DAILY_CALL_ALLOCATION only its default; every budget
check reads it. Against the real test destination, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.context import open_context
from feeds.context import Context
from feeds.errors import ConfigError
from feeds.export import allocation
from feeds.export.budget import usage
from feeds.pipeline import indexer
from feeds.state import runtime_settings
from tests.conftest import library_context
from worker.testing.destination_server import DestinationServer


@pytest.fixture
def lib(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    """12 books sent 3 a call (4 calls for a full sync), no allocation in the environment."""
    ctx = library_context(db_url, destination.url, tmp_path)
    yield ctx
    ctx.close()


def test_the_environment_value_is_in_force_until_one_is_stored(lib: Context) -> None:
    now = allocation.current(lib)
    assert (now.calls, now.source, now.default) == (None, "environment", None)
    assert usage(lib).allocation is None


def test_a_stored_allocation_pauses_sending_in_every_process_on_the_database(
    lib: Context, destination: DestinationServer
) -> None:
    changed = allocation.change(lib, 2, by="ops-alice")
    assert (changed.calls, changed.source, changed.updated_by) == (2, "database", "ops-alice")
    # Another process: its own context (engine) on the same worker database.
    other = open_context(lib.settings)
    try:
        assert usage(other).allocation == 2
        outcome = indexer.reindex(other, other.registry.get("books"))
    finally:
        other.close()
    assert len(destination.requests) == 2  # then the budget paused sending
    assert outcome.status == "partial" and "API-call budget used up" in (outcome.message or "")
    assert len(destination.accepted_ids("books")) == 6


def test_default_goes_back_to_the_environment_and_unlimited_is_stored_as_such(
    db_url: str, destination: DestinationServer, tmp_path: Path
) -> None:
    ctx = library_context(db_url, destination.url, tmp_path, EXPORT_DAILY_CALL_ALLOCATION="20")
    try:
        assert allocation.change(ctx, "", by="ops").calls is None  # unlimited, stored
        assert allocation.current(ctx).source == "database"
        assert usage(ctx).cap is None
        back = allocation.change(ctx, "default", by="ops")
        assert (back.calls, back.source) == (20, "environment")
        assert allocation.change(ctx, "1,500", by="ops").calls == 1500
    finally:
        ctx.close()


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5", 0, 10**12, True, [1]])
def test_a_bad_allocation_is_refused_with_what_is_accepted(lib: Context, value: object) -> None:
    with pytest.raises(ConfigError) as refused:
        allocation.change(lib, value, by="ops")
    assert "is not accepted; accepted: a whole number of calls from 1 to 1,000,000,000" in str(
        refused.value
    )
    assert allocation.current(lib).source == "environment"  # nothing was stored


def test_another_process_sees_a_change_once_its_cache_of_ten_seconds_expires(
    lib: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = open_context(lib.settings)
    try:
        assert allocation.calls(other) is None  # read, and kept for CACHE_S
        allocation.change(lib, 7, by="ops")
        assert allocation.calls(lib) == 7  # the process that changed it: at once
        assert allocation.calls(other) is None
        later = time.monotonic() + runtime_settings.CACHE_S + 0.1
        monkeypatch.setattr(runtime_settings, "clock", lambda: later)
        assert allocation.calls(other) == 7
    finally:
        other.close()
    assert runtime_settings.CACHE_S == 10.0  # the figure docs/dashboard.md gives
