"""What is new since the last job: error categories, failed runs, daily statistics, digests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.engine import Connection

from feeds.definitions import RunStatus
from feeds.notify.messages import (
    category_changes,
    category_event,
    day_stats,
    digest_body,
    digest_period,
    immediate,
    json_default,
    merge_stats,
    notify_immediately,
    run_event,
)
from feeds.notify.settings import NoticeKind, NotificationConfig
from feeds.state.database import insert_for
from feeds.state.tables import daily_stats, marks, notices, open_categories, sync_errors, sync_runs

log = structlog.get_logger("feeds.notify.tracking")

FAILED_RUN_STATUSES = (RunStatus.ERROR, RunStatus.CONFIG_ERROR, RunStatus.ROLLED_BACK)


# Failed runs are looked for this far before the last check too: a run whose row was committed
# just after the previous check is not missed; its notice key keeps it from being sent twice.
RUN_LOOKBACK = timedelta(minutes=10)


STATS_DAYS = 8  # daily statistics kept and rolled up: a week plus the day in progress


ALL_FEEDS = "*"  # the daily-statistics row that marks a day as rolled up


def _track_categories(conn: Connection, config: NotificationConfig, now: datetime) -> int:
    c = sync_errors.c
    current = {
        (row.feed, row.category): row
        for row in conn.execute(
            select(
                c.feed,
                c.category,
                func.count().label("errors"),
                func.count(func.distinct(c.item_id)).label("records"),
                func.min(c.first_seen).label("since"),
                func.max(c.id).label("latest"),
            )
            .where(c.resolved.is_(False))
            .group_by(c.feed, c.category)
        )
    }
    known = {(r.feed, r.category) for r in conn.execute(select(open_categories))}
    opened, closed = category_changes(set(current), known)
    for feed, category in closed:
        conn.execute(
            open_categories.delete().where(
                open_categories.c.feed == feed, open_categories.c.category == category
            )
        )
    recorded = 0
    for feed, category in sorted(opened):
        claimed = conn.execute(
            insert_for(conn.dialect.name, open_categories)
            .values(feed=feed, category=category, opened_at=now)
            .on_conflict_do_nothing(index_elements=["feed", "category"])
            .returning(open_categories.c.feed)
        ).first()
        if claimed is None or not notify_immediately(config, category):
            continue  # another worker saw it first, or it is not notified
        row = current[(feed, category)]
        example = conn.execute(
            select(c.item_id, c.code, c.message).where(c.id == row.latest)
        ).first()
        event = category_event(
            feed,
            category,
            errors=row.errors,
            records=row.records,
            since=row.since,
            example=None if example is None else dict(example._mapping),
        )
        recorded += _add_notice(
            conn,
            f"category:{feed}:{category}:{now.isoformat()}",
            NoticeKind.ERROR_CATEGORY,
            event,
            now,
        )
    return recorded


def _track_failed_runs(conn: Connection, config: NotificationConfig, now: datetime) -> int:
    checked = conn.scalar(select(marks.c.at).where(marks.c.name == "failed_runs"))
    _set_mark(conn, "failed_runs", now)
    if checked is None or not immediate(config):
        return 0  # the first run starts from now: no notices about the past
    c = sync_runs.c
    failed = (
        conn.execute(
            select(sync_runs).where(
                c.status.in_([s.value for s in FAILED_RUN_STATUSES]),
                c.finished_at >= checked - RUN_LOOKBACK,
            )
        )
        .mappings()
        .all()
    )
    recorded = 0
    for run in failed:
        event = run_event(dict(run))
        recorded += _add_notice(conn, f"run:{run['id']}", NoticeKind.RUN_FAILED, event, now)
    return recorded


def _roll_up_days(conn: Connection, now: datetime) -> None:
    """Keep per-day statistics of the last days (digests outlive the run retention)."""
    today = now.date()
    days = [today - timedelta(days=n) for n in range(1, STATS_DAYS + 1)]
    done = set(
        conn.scalars(
            select(daily_stats.c.day).where(
                daily_stats.c.feed == ALL_FEEDS, daily_stats.c.day >= days[-1]
            )
        )
    )
    for day in days:
        if day in done:
            continue
        start = datetime.combine(day, time())
        end = start + timedelta(days=1)
        stats = day_stats(
            conn.execute(
                select(
                    sync_runs.c.feed,
                    sync_runs.c.status,
                    func.count(),
                    func.coalesce(func.sum(sync_runs.c.rows_synced), 0),
                    func.coalesce(func.sum(sync_runs.c.failed), 0),
                )
                .where(sync_runs.c.finished_at >= start, sync_runs.c.finished_at < end)
                .group_by(sync_runs.c.feed, sync_runs.c.status)
            ).all(),
            conn.execute(
                select(sync_errors.c.feed, sync_errors.c.category, func.count())
                .where(sync_errors.c.last_seen >= start, sync_errors.c.last_seen < end)
                .group_by(sync_errors.c.feed, sync_errors.c.category)
            ).all(),
        )
        rows = [{"day": day, "feed": feed, "stats": json.dumps(s)} for feed, s in stats.items()]
        rows.append({"day": day, "feed": ALL_FEEDS, "stats": "{}"})
        for row in rows:
            conn.execute(
                insert_for(conn.dialect.name, daily_stats)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["day", "feed"])
            )
    conn.execute(daily_stats.delete().where(daily_stats.c.day < days[-1]))


def _record_digest(conn: Connection, config: NotificationConfig, now: datetime) -> int:
    if not config.active:
        return 0
    period = digest_period(config.frequency, now)
    if period is None:
        return 0
    key = f"digest:{config.frequency.value}:{period.start:%Y-%m-%d}"
    if conn.scalar(select(notices.c.id).where(notices.c.key == key)) is not None:
        return 0
    per_day = conn.execute(
        select(daily_stats.c.feed, daily_stats.c.stats).where(
            daily_stats.c.day >= period.start.date(),
            daily_stats.c.day < period.end.date(),
            daily_stats.c.feed != ALL_FEEDS,
        )
    ).all()
    totals = merge_stats((feed, json.loads(stats)) for feed, stats in per_day)
    body = digest_body(config.frequency, period, totals, now)
    return _add_notice(conn, key, NoticeKind.DIGEST, body, now)


def _add_notice(
    conn: Connection, key: str, kind: NoticeKind, body: Mapping[str, Any], now: datetime
) -> int:
    """Record a notice once: 1 when this call recorded it, 0 when it was already there."""
    created = conn.execute(
        insert_for(conn.dialect.name, notices)
        .values(
            key=key,
            kind=kind.value,
            body=json.dumps(body, default=json_default),
            created_at=now,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(notices.c.id)
    ).first()
    if created is not None:
        log.info("notifications.recorded", kind=kind.value, key=key)
    return int(created is not None)


def _set_mark(conn: Connection, name: str, at: datetime) -> None:
    insert = insert_for(conn.dialect.name, marks).values(name=name, at=at)
    conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_={"at": at}))
