"""Realtime mode ("Update on Save"): how the application signals changes, and the immediate sync.

A change is first made durable in the feed's changelog — by the triggers, or by `notify()` for
changes the triggers cannot see — and then signalled: on PostgreSQL the changelog's NOTIFY trigger
wakes the listener (`python -m worker listen`, or the embedded `run`); on SQLite the listener
polls the changelog heads. Either way the listener calls `sync()` for the feed within moments, and
the minute job `indexer_update_all_views` remains the safety net for anything it missed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from feeds.context import Context
from feeds.definitions import Feed, IndexerMode, IndexerStatus
from feeds.errors import NotifyError
from feeds.pipeline import indexer
from feeds.pipeline.run import Outcome
from feeds.state import indexer_state
from feeds.tracking import changelog

CHANNEL = changelog.CHANNEL


def entity_ids(feed: Feed, ids: Iterable[int | str]) -> list[int]:
    """Validate the ids an application passes: integer keys of the feed's driving table."""
    parsed = []
    for raw in ids:
        try:
            if isinstance(raw, bool):
                raise ValueError
            key = int(str(raw).strip())
            if not 0 < key < 2**63:
                raise ValueError
        except ValueError:
            raise NotifyError(
                f"{raw!r} is not an entity id of feed {feed.name!r}; accepted: positive whole "
                f"numbers (values of {feed.key_table}.{feed.key_column}) below 2^63."
            ) from None
        parsed.append(key)
    return sorted(set(parsed))


def notify(
    ctx: Context, feed: Feed | str, ids: Iterable[int | str], *, conn: Connection | None = None
) -> int:
    """Record that these entities of `feed` changed, durably, and signal the listener.

    `ids` are the keys of the feed's driving table (for `products`: product ids). With `conn`, an
    open transaction on the source database, the ids are recorded in it: they commit or roll back
    with the application's own change (and PostgreSQL delivers the signal at that commit).
    Returns how many distinct ids were recorded.
    """
    if isinstance(feed, str):
        feed = ctx.registry.get(feed)
    entities = entity_ids(feed, ids)
    if not entities:
        return 0
    if conn is not None:
        changelog.record(conn, feed, entities)
    else:
        with ctx.source.begin() as own:
            changelog.record(own, feed, entities)
    return len(entities)


def pending(ctx: Context) -> list[Feed]:
    """Realtime feeds (ready ones) with changelog rows after their pointer: what a sync would take."""
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
    feeds = [
        feed
        for feed in ctx.registry
        if states[feed.indexer_id].mode is IndexerMode.REALTIME
        and states[feed.indexer_id].status is IndexerStatus.VALID
    ]
    if not feeds:
        return []
    with ctx.source.connect() as src:
        return [
            feed
            for feed in feeds
            if changelog.current_version(src, feed) > states[feed.indexer_id].version_id
        ]


def sync(ctx: Context, feed: Feed) -> Outcome | None:
    """The immediate partial sync of one feed (None when nothing was pending).

    An outcome `skipped` `Skip.LOCKED` means another process holds the feed: try again
    shortly (what it is doing may have started before this change was logged).
    """
    return indexer.update_view(ctx, feed)


@dataclass(frozen=True)
class Signal:
    """One NOTIFY received: which feed of which schema changed."""

    schema: str
    feed: str


def parse_signal(payload: str) -> Signal | None:
    """Decode a NOTIFY payload written by the changelog's notify trigger (None if it is not one)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    schema, feed = data.get("schema"), data.get("feed")
    if not isinstance(schema, str) or not isinstance(feed, str):
        return None
    return Signal(schema, feed)
