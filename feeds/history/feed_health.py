"""Reading each feed's health: the indexer state, the changelog backlog and lag (source database),
the last runs, and the feed table's rows per item status; the verdict is `health.assess`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from feeds.context import Context
from feeds.definitions import Feed, IndexerStatus, RunStatus
from feeds.history import read_model, runs
from feeds.history.health import DEFAULT_RULES, FeedSnapshot, HealthRules, LastRun, Verdict, assess
from feeds.history.read_model import RunRow, RunsFingerprint
from feeds.pipeline.run import lock_name
from feeds.state import feed_items, indexer_state, item_lookup
from feeds.state.locks import is_locked
from feeds.tracking import changelog

SUCCEEDED = (RunStatus.SUCCESS.value, RunStatus.PARTIAL.value)
ENDED = tuple(s.value for s in RunStatus if s is not RunStatus.RUNNING)


class StatusCounts:
    """The feed table's rows per feed and item status, counted again only when they may have
    changed. Counting 1M rows costs ~100 ms, the most of a dashboard page; the pipeline writes
    item status only inside runs, so counts taken while no run was running hold until a run
    starts, ends or is removed (the runs' fingerprint changes). While one runs, they are at most
    `while_running` old."""

    def __init__(self, while_running: timedelta = timedelta(seconds=30)) -> None:
        self.while_running = while_running
        self._lock = threading.Lock()
        self._taken: tuple[RunsFingerprint, datetime, dict[str, dict[int | None, int]]] | None = (
            None
        )

    def read(self, conn: Connection, now: datetime) -> dict[str, dict[int | None, int]]:
        key = read_model.runs_fingerprint(conn)  # before counting: a later change is seen next time
        with self._lock:
            taken = self._taken
        fresh = taken is not None and (
            key.running == 0 or timedelta(0) <= now - taken[1] < self.while_running
        )
        if taken is not None and taken[0] == key and fresh:
            return taken[2]
        counts = item_lookup.status_counts(conn)
        with self._lock:
            self._taken = (key, now, counts)
        return counts


@dataclass(frozen=True)
class FeedHealth:
    snapshot: FeedSnapshot
    verdict: Verdict


def view_status(ctx: Context, feed: Feed, status: IndexerStatus) -> str:
    """The changelog view's state, as Magento's mview names it: `suspended` while the indexer is
    (partial syncs leave it alone), `working` while a sync holds the feed, else `idle`."""
    if status is IndexerStatus.SUSPENDED:
        return "suspended"
    return "working" if is_locked(ctx.db, lock_name(feed)) else "idle"


def feed_health(
    ctx: Context,
    now: datetime,
    rules: HealthRules = DEFAULT_RULES,
    counts: StatusCounts | None = None,
) -> list[FeedHealth]:
    """Every feed of the registry, by name, with its snapshot and verdict; `counts` keeps the item
    counts between calls (a new count each call without it)."""
    runs.close_abandoned(ctx.db)  # a run of a dead process is not "working"
    feeds = sorted(ctx.registry, key=lambda f: f.name)
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
        unbuilt = feed_items.pending_rebuilds(conn)
        per_status = counts.read(conn, now) if counts else item_lookup.status_counts(conn)
        stuck = item_lookup.stuck_counts(conn, [f.name for f in feeds], now - rules.stuck_after)
        last_success = {f.name: read_model.latest_run(conn, f.name, SUCCEEDED) for f in feeds}
        last_finished = {f.name: read_model.latest_run(conn, f.name, ENDED) for f in feeds}
    pending: dict[str, tuple[int, float | None]] = {}
    with ctx.source.connect() as src:
        for feed in feeds:
            after = states[feed.indexer_id].version_id
            pending[feed.name] = (
                changelog.backlog(src, feed, after),
                changelog.oldest_pending_age(src, feed, after),
            )
    found = []
    for feed in feeds:
        state = states[feed.indexer_id]
        backlog, lag_s = pending[feed.name]
        snapshot = FeedSnapshot(
            feed=feed.name,
            indexer_id=feed.indexer_id,
            title=feed.title,
            status=state.status,
            mode=state.mode,
            view_status=view_status(ctx, feed, state.status),
            # Entities that could not be built wait in the backlog too, as `indexer:status` counts.
            backlog=backlog + unbuilt.get(feed.name, 0),
            lag_s=lag_s,
            export_mode=ctx.plan.feed(feed.name).export_mode,
            last_success=_last(last_success[feed.name]),
            last_finished=_last(last_finished[feed.name]),
            items=per_status.get(feed.name, {}),
            stuck=stuck.get(feed.name, {}),
        )
        found.append(FeedHealth(snapshot, assess(snapshot, now, rules)))
    return found


def _last(row: RunRow | None) -> LastRun | None:
    if row is None:
        return None
    return LastRun(row.id, RunStatus(row.status), row.started_at, row.finished_at, row.message)
