"""A 429's Retry-After pauses every sender to that destination (SPEC §5), through the worker
database, against the real test destination, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine

from feeds.definitions import ItemStatus
from feeds.export import http
from feeds.export.http import HttpDestination
from feeds.export.pause import DestinationPause
from feeds.pipeline.diff import Change, FeedItem
from feeds.state import database
from worker.testing.destination_server import DestinationServer


def item(item_id: str) -> FeedItem:
    return FeedItem(item_id, 1, False, datetime(2026, 11, 22, 10), "h", b'{"x":1}', Change.NEW)


@pytest.fixture
def engines(db_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one migrated worker database: what two worker processes hold."""
    first, second = database.create_db_engine(db_url), database.create_db_engine(db_url)
    database.upgrade(first)
    yield first, second
    first.dispose()
    second.dispose()


@pytest.fixture
def senders(
    engines: tuple[Engine, Engine], destination: DestinationServer
) -> Iterator[tuple[HttpDestination, HttpDestination]]:
    """Two HTTP destinations to the same server, sharing nothing but the worker database."""
    pair = tuple(
        HttpDestination(destination.url, pause=DestinationPause(engine, destination.url))
        for engine in engines
    )
    yield pair[0], pair[1]
    for sender in pair:
        sender.close()


@pytest.mark.parametrize("http_date", [False, True], ids=["seconds", "http-date"])
def test_a_429_pauses_every_sender_to_that_destination(
    senders: tuple[HttpDestination, HttpDestination],
    destination: DestinationServer,
    http_date: bool,
) -> None:
    first, second = senders
    destination.rate_limit_for(1.2, http_date=http_date)
    window_ends = time.monotonic() + 1.2

    limited = first.send("books", [item("a")])
    delivered = second.send("books", [item("b")])

    assert {r.status for r in limited.results} == {ItemStatus.RETRYABLE}
    assert [r.status for r in delivered.results] == [ItemStatus.SENT]
    # The second sender made no request while the pause was on: one 429, then one 200 after it.
    assert [r.status for r in destination.requests] == [429, 200]
    assert destination.requests[1].time >= window_ends


def test_a_sender_that_would_wait_too_long_sends_nothing_and_keeps_the_batch_retryable(
    senders: tuple[HttpDestination, HttpDestination],
    destination: DestinationServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "MAX_RETRY_AFTER_WAIT_S", 0.2)
    first, second = senders
    destination.rate_limit_next(1, retry_after=30)

    first.send("books", [item("a")])
    held = second.send("books", [item("b"), item("c")])

    assert len(destination.requests) == 1
    assert held.calls == 0 and held.retry_after_s is not None and 28 < held.retry_after_s <= 30
    assert {(r.status, r.code) for r in held.results} == {(ItemStatus.RETRYABLE, "HTTP_429")}


def test_a_429_extends_the_pause_and_never_shortens_it(
    engines: tuple[Engine, Engine], destination: DestinationServer
) -> None:
    mine, theirs = (DestinationPause(engine, destination.url) for engine in engines)
    mine.extend(30)
    assert 29 < theirs.extend(1) <= 30
    assert 29 < mine.remaining_s(fresh=True) <= 30
    assert DestinationPause(engines[0], "http://elsewhere").remaining_s() == 0.0


def test_a_sender_reads_the_shared_pause_at_most_every_refresh_interval(
    engines: tuple[Engine, Engine], destination: DestinationServer
) -> None:
    mine = DestinationPause(engines[0], destination.url, refresh_s=0.3)
    theirs = DestinationPause(engines[1], destination.url)
    assert mine.remaining_s() == 0.0
    theirs.extend(30)
    assert mine.remaining_s() == 0.0  # read less than refresh_s ago
    time.sleep(0.3)
    assert mine.remaining_s() > 29
