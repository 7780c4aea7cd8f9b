"""Error notifications (SPEC §6): immediate notices and daily or weekly digests, POSTed as JSON to a
webhook by the `sync_error_notifications` job.

Every notice is a row of the worker database with a unique key before anything is sent, so a new
error category or a failed run is notified once whatever the number of workers, and a webhook that
fails keeps the notice pending for the next job run. Deciding what is due and writing the message
are plain functions (the bottom of this module); the rest reads and writes the database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from feeds.context import Context
from feeds.database import insert_for
from feeds.error_categories import help_for
from feeds.errors import ConfigError
from feeds.export.protocol import ErrorCategory
from feeds.runs import RunStatus, sync_errors, sync_runs
from feeds.store import Base, utcnow
from feeds.urls import is_http_url

log = structlog.get_logger("feeds.notifications")

FAILED_RUN_STATUSES = (RunStatus.ERROR, RunStatus.CONFIG_ERROR, RunStatus.ROLLED_BACK)
# Failed runs are looked for this far before the last check too: a run whose row was committed
# just after the previous check is not missed; its notice key keeps it from being sent twice.
RUN_LOOKBACK = timedelta(minutes=10)
CLAIM = timedelta(minutes=2)  # a worker that died mid-POST frees its notices after this
EVENTS_PER_POST = 100
KEEP_SENT = timedelta(days=30)
STATS_DAYS = 8  # daily statistics kept and rolled up: a week plus the day in progress
WEBHOOK_TIMEOUT_S = 10.0
ALL_FEEDS = "*"  # the daily-statistics row that marks a day as rolled up


class Frequency(StrEnum):
    OFF = "off"
    IMMEDIATELY = "immediately"
    DAILY = "daily"
    WEEKLY = "weekly"


class NoticeKind(StrEnum):
    ERROR_CATEGORY = "error_category"
    RUN_FAILED = "run_failed"
    DIGEST = "digest"


EVENT_KINDS = (NoticeKind.ERROR_CATEGORY.value, NoticeKind.RUN_FAILED.value)


# --- tables ------------------------------------------------------------------------------------


class NotificationSettingsRow(Base):
    __tablename__ = "notification_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    frequency: Mapped[str] = mapped_column(String(20))
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class OpenCategory(Base):
    __tablename__ = "notification_categories"

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime)


class Notice(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "sent_at", "kind"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Mark(Base):
    __tablename__ = "notification_marks"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class DailyStats(Base):
    __tablename__ = "notification_daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    stats: Mapped[str] = mapped_column(Text)


settings_table = cast(Table, NotificationSettingsRow.__table__)
open_categories = cast(Table, OpenCategory.__table__)
notices = cast(Table, Notice.__table__)
marks = cast(Table, Mark.__table__)
daily_stats = cast(Table, DailyStats.__table__)


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationConfig:
    """The notification settings in force: from the TOML `[notifications]`, or as changed at runtime."""

    frequency: Frequency
    webhook_url: str | None
    source: str  # "config" (the TOML file or its defaults) or "database" (changed at runtime)
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.frequency is not Frequency.OFF and self.webhook_url is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency.value,
            "webhook_url": self.webhook_url,
            "source": self.source,
            "updated_at": self.updated_at,
        }


def current_settings(ctx: Context) -> NotificationConfig:
    """The settings in force: a runtime change (PUT /sync/notifications) wins over the TOML file."""
    with ctx.db.connect() as conn:
        row = conn.execute(select(settings_table).where(settings_table.c.id == 1)).first()
    if row is not None:
        return NotificationConfig(
            Frequency(row.frequency), row.webhook_url, "database", row.updated_at
        )
    configured = ctx.settings.file.notifications
    return NotificationConfig(Frequency(configured.frequency), configured.webhook_url, "config")


def update_settings(ctx: Context, *, frequency: str, webhook_url: str | None) -> NotificationConfig:
    """Change the settings for every worker; raises ConfigError with one sentence on a bad value."""
    chosen, url = check_settings(frequency, webhook_url)
    now = utcnow()
    values = {"frequency": chosen.value, "webhook_url": url, "updated_at": now}
    with ctx.db.begin() as conn:
        insert = insert_for(conn.dialect.name, settings_table).values(id=1, **values)
        conn.execute(insert.on_conflict_do_update(index_elements=["id"], set_=values))
    log.info(
        "notifications.settings_changed",
        frequency=chosen.value,
        webhook=_host(url) if url else None,
    )
    return NotificationConfig(chosen, url, "database", now)


def check_settings(frequency: str, webhook_url: str | None) -> tuple[Frequency, str | None]:
    """Validate a frequency and a webhook URL; the sentence of the ConfigError says what is accepted."""
    accepted = ", ".join(f"'{f.value}'" for f in Frequency)
    try:
        chosen = Frequency(frequency)
    except ValueError:
        raise ConfigError(
            f"Notification frequency {frequency!r} is not accepted; accepted values are {accepted}."
        ) from None
    url = (webhook_url or "").strip() or None
    if url is not None and (len(url) > 2000 or not is_http_url(url)):
        raise ConfigError(
            f"Webhook URL {url[:100]!r} is not accepted; accepted: an http(s):// URL with a host, "
            "such as https://hooks.example.com/feedsync."
        )
    if chosen is not Frequency.OFF and url is None:
        raise ConfigError(
            f"Notification frequency {chosen.value!r} needs a webhook URL to deliver to; "
            "give webhook_url, or set the frequency to 'off'."
        )
    return chosen, url


# --- the job -----------------------------------------------------------------------------------


Post = Callable[[str, Mapping[str, Any]], None]


@dataclass
class Report:
    """What one run of `sync_error_notifications` did."""

    frequency: Frequency
    active: bool = False  # a frequency and a webhook: something may be sent
    recorded: int = 0  # new events (error categories, failed runs) and digests recorded
    posts: int = 0  # webhook requests that succeeded
    events_sent: int = 0
    digests_sent: int = 0
    failures: list[str] = field(default_factory=list)
    pending: int = 0

    def lines(self) -> list[str]:
        head = f"notifications ({self.frequency.value}): {self.recorded} new"
        if self.frequency is not Frequency.OFF and not self.active:
            head += " (no webhook_url set: nothing is sent)"
        sent = (
            f"sent {self.events_sent} events and {self.digests_sent} digests in {self.posts} posts"
        )
        lines = [f"{head}; {sent}; {self.pending} pending"]
        lines += [f"webhook failed: {failure}" for failure in self.failures]
        return lines


def send_due(ctx: Context, now: datetime | None = None, post: Post | None = None) -> Report:
    """`sync_error_notifications`: record what is new, then deliver what is pending.

    Error categories, failed runs and daily statistics are tracked whatever the frequency, so
    switching notifications on later does not replay the past.
    """
    now = now or utcnow()
    config = current_settings(ctx)
    report = Report(config.frequency, active=config.active)
    with ctx.db.begin() as conn:
        # A write first: on SQLite it takes the write lock before any read, so two workers queue
        # here rather than one failing on a stale snapshot; on PostgreSQL the row lock does it.
        _set_mark(conn, "job", now)
        report.recorded += _track_categories(conn, config, now)
        report.recorded += _track_failed_runs(conn, config, now)
        _roll_up_days(conn, now)
        report.recorded += _record_digest(conn, config, now)
        conn.execute(notices.delete().where(notices.c.sent_at < now - KEEP_SENT))
    if config.active:
        assert config.webhook_url is not None
        _deliver(ctx, config.webhook_url, now, post or post_json, report)
    with ctx.db.connect() as conn:
        report.pending = int(
            conn.scalar(
                select(func.count()).select_from(notices).where(notices.c.sent_at.is_(None))
            )
            or 0
        )
    log.info(
        "notifications.done",
        frequency=config.frequency.value,
        recorded=report.recorded,
        events_sent=report.events_sent,
        digests_sent=report.digests_sent,
        failures=len(report.failures),
        pending=report.pending,
    )
    return report


def post_json(url: str, body: Mapping[str, Any]) -> None:
    """POST the body as JSON; any answer but 2xx is a failure (raised)."""
    response = httpx.post(
        url,
        content=json.dumps(body, default=_json_default).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "feedsync/0.1"},
        timeout=WEBHOOK_TIMEOUT_S,
    )
    response.raise_for_status()


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
            body=json.dumps(body, default=_json_default),
            created_at=now,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(notices.c.id)
    ).first()
    if created is not None:
        log.info("notifications.recorded", kind=kind.value, key=key)
    return int(created is not None)


def _deliver(ctx: Context, url: str, now: datetime, post: Post, report: Report) -> None:
    """POST the pending events (in notices of up to 100) and digests; stop at the first failure:
    a webhook that is down gets one attempt per job run, not one per pending notice."""
    events = _claim(ctx, now, EVENT_KINDS)
    posts: list[tuple[Mapping[str, Any], list[int], NoticeKind]] = []
    for start in range(0, len(events), EVENTS_PER_POST):
        chunk = events[start : start + EVENTS_PER_POST]
        body = notice_body([event for _, event in chunk], now)
        posts.append((body, [i for i, _ in chunk], NoticeKind.ERROR_CATEGORY))
    for notice_id, digest in _claim(ctx, now, (NoticeKind.DIGEST.value,)):
        posts.append((digest, [notice_id], NoticeKind.DIGEST))
    for number, (message, ids, kind) in enumerate(posts):
        if not _post_once(ctx, url, post, message, ids, now, report):
            _release(ctx, [i for _, later, _ in posts[number + 1 :] for i in later])
            return
        if kind is NoticeKind.DIGEST:
            report.digests_sent += 1
        else:
            report.events_sent += len(ids)


def _release(ctx: Context, ids: list[int]) -> None:
    if ids:
        with ctx.db.begin() as conn:
            conn.execute(update(notices).where(notices.c.id.in_(ids)).values(claimed_until=None))


def _claim(ctx: Context, now: datetime, kinds: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
    """Take the pending notices of these kinds for this worker for a while; oldest first."""
    c = notices.c
    with ctx.db.begin() as conn:
        claimed = conn.execute(
            update(notices)
            .where(
                c.sent_at.is_(None),
                c.kind.in_(list(kinds)),
                or_(c.claimed_until.is_(None), c.claimed_until < now),
            )
            .values(claimed_until=now + CLAIM)
            .returning(c.id, c.body)
        ).all()
    return sorted((int(notice_id), json.loads(body)) for notice_id, body in claimed)


def _post_once(
    ctx: Context,
    url: str,
    post: Post,
    body: Mapping[str, Any],
    ids: list[int],
    now: datetime,
    report: Report,
) -> bool:
    c = notices.c
    try:
        post(url, body)
    except (httpx.HTTPError, OSError) as exc:
        error = _describe(exc)
        with ctx.db.begin() as conn:
            conn.execute(
                update(notices)
                .where(c.id.in_(ids))
                .values(attempts=c.attempts + 1, last_error=error, claimed_until=None)
            )
        report.failures.append(error)
        log.warning(
            "notifications.webhook_failed",
            webhook=_host(url),
            error=error,
            notices=len(ids),
            retry="at the next job run",
        )
        return False
    with ctx.db.begin() as conn:
        conn.execute(
            update(notices)
            .where(c.id.in_(ids))
            .values(sent_at=now, attempts=c.attempts + 1, last_error=None, claimed_until=None)
        )
    report.posts += 1
    log.info("notifications.sent", webhook=_host(url), type=body.get("type"), notices=len(ids))
    return True


def _set_mark(conn: Connection, name: str, at: datetime) -> None:
    insert = insert_for(conn.dialect.name, marks).values(name=name, at=at)
    conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_={"at": at}))


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from the webhook"
    return f"{type(exc).__name__}: {exc}"[:500]


def _host(url: str) -> str:
    """The webhook's host only: its path often holds a secret token."""
    return urlsplit(url).netloc


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- pure: what is due, and what the message says ----------------------------------------------


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def category_changes(
    current: set[tuple[str, str]], known: set[tuple[str, str]]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(feed, category) pairs that now have unresolved errors but had none, and those that no longer have any."""
    return current - known, known - current


def notify_immediately(config: NotificationConfig, category: str) -> bool:
    """Immediate notices cover every category but `transient`: retryable failures resend themselves
    (a run that fails entirely is notified as a failed run)."""
    return immediate(config) and category != ErrorCategory.TRANSIENT.value


def immediate(config: NotificationConfig) -> bool:
    """Immediate notices are recorded only while they can be delivered (a webhook is set): a
    webhook configured later must not receive the backlog of a period without one."""
    return config.active and config.frequency is Frequency.IMMEDIATELY


def digest_period(frequency: Frequency, now: datetime) -> Period | None:
    """The latest complete period of a digest: yesterday (UTC), or last week (Monday to Monday)."""
    midnight = datetime.combine(now.date(), time())
    if frequency is Frequency.DAILY:
        return Period(midnight - timedelta(days=1), midnight)
    if frequency is Frequency.WEEKLY:
        monday = midnight - timedelta(days=midnight.weekday())
        return Period(monday - timedelta(days=7), monday)
    return None


def day_stats(
    run_rows: Iterable[Sequence[Any]], error_rows: Iterable[Sequence[Any]]
) -> dict[str, dict[str, Any]]:
    """Per feed: runs by status, items synced and failed, errors by category (one day's rows)."""
    stats: dict[str, dict[str, Any]] = {}

    def of(feed: str) -> dict[str, Any]:
        return stats.setdefault(
            feed, {"runs": {}, "rows_synced": 0, "rows_failed": 0, "errors": {}}
        )

    for feed, status, count, synced, failed in run_rows:
        entry = of(feed)
        entry["runs"][status] = entry["runs"].get(status, 0) + int(count)
        entry["rows_synced"] += int(synced)
        entry["rows_failed"] += int(failed)
    for feed, category, count in error_rows:
        entry = of(feed)
        entry["errors"][category] = entry["errors"].get(category, 0) + int(count)
    return stats


def merge_stats(per_day: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Add up daily statistics per feed."""
    merged: dict[str, dict[str, Any]] = {}
    for feed, stats in per_day:
        entry = merged.setdefault(
            feed, {"runs": {}, "rows_synced": 0, "rows_failed": 0, "errors": {}}
        )
        for status, count in stats.get("runs", {}).items():
            entry["runs"][status] = entry["runs"].get(status, 0) + count
        for category, count in stats.get("errors", {}).items():
            entry["errors"][category] = entry["errors"].get(category, 0) + count
        entry["rows_synced"] += stats.get("rows_synced", 0)
        entry["rows_failed"] += stats.get("rows_failed", 0)
    return merged


def category_event(
    feed: str,
    category: str,
    *,
    errors: int,
    records: int,
    since: datetime,
    example: Mapping[str, Any] | None,
) -> dict[str, Any]:
    help_text = help_for(category)
    return {
        "event": NoticeKind.ERROR_CATEGORY.value,
        "feed": feed,
        "category": category,
        "title": help_text.title,
        "errors": errors,
        "records": records,
        "since": iso(since),
        "example": dict(example) if example else None,
        "resolution": help_text.resolution,
    }


def run_event(run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event": NoticeKind.RUN_FAILED.value,
        "feed": run["feed"],
        "run_id": run["id"],
        "operation": run["operation"],
        "status": run["status"],
        "started_at": iso(run["started_at"]),
        "finished_at": iso(run["finished_at"]) if run["finished_at"] else None,
        "rows_synced": run["rows_synced"],
        "failed": run["failed"],
        "message": run["message"],
    }


def notice_body(events: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """The JSON an immediate notice POSTs: every new event since the last one, and a one-line text."""
    return {
        "type": "notice",
        "source": "feedsync",
        "sent_at": iso(now),
        "text": "Feedsync: " + "; ".join(describe_event(e) for e in events) + ".",
        "events": list(events),
    }


def describe_event(event: Mapping[str, Any]) -> str:
    if event["event"] == NoticeKind.ERROR_CATEGORY.value:
        return (
            f"new {event['category']} errors in feed {event['feed']} "
            f"({_count(event['errors'], 'error')} on {_count(event['records'], 'record')})"
        )
    return f"{event['operation']} run of feed {event['feed']} ended {event['status']}"


def digest_body(
    frequency: Frequency, period: Period, per_feed: Mapping[str, Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """The JSON of a daily or weekly digest: counts per feed and error category over the period."""
    runs: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    synced = failed = 0
    feeds = []
    for feed in sorted(per_feed):
        stats = per_feed[feed]
        runs.update(stats["runs"])
        errors.update(stats["errors"])
        synced += stats["rows_synced"]
        failed += stats["rows_failed"]
        feeds.append(
            {
                "feed": feed,
                "runs": sum(stats["runs"].values()),
                "runs_by_status": dict(sorted(stats["runs"].items())),
                "rows_synced": stats["rows_synced"],
                "rows_failed": stats["rows_failed"],
                "errors": sum(stats["errors"].values()),
                "errors_by_category": dict(sorted(stats["errors"].items())),
            }
        )
    label = f"{period.start:%Y-%m-%d}"
    if frequency is Frequency.WEEKLY:
        label = f"{label} to {period.end - timedelta(days=1):%Y-%m-%d}"
    not_ok = ", ".join(f"{n} {s}" for s, n in sorted(runs.items()) if s != RunStatus.SUCCESS)
    text = (
        f"Feedsync {frequency.value} digest {label}: {_count(sum(runs.values()), 'run')}"
        f"{f' ({not_ok})' if not_ok else ''}, {synced} items synced, "
        f"{_count(sum(errors.values()), 'error')}"
        f"{' (' + ', '.join(f'{c} {n}' for c, n in sorted(errors.items())) + ')' if errors else ''}."
    )
    return {
        "type": "digest",
        "source": "feedsync",
        "frequency": frequency.value,
        "period": {"start": iso(period.start), "end": iso(period.end)},
        "sent_at": iso(now),
        "text": text,
        "totals": {
            "runs": sum(runs.values()),
            "runs_by_status": dict(sorted(runs.items())),
            "rows_synced": synced,
            "rows_failed": failed,
            "errors": sum(errors.values()),
            "errors_by_category": dict(sorted(errors.items())),
        },
        "feeds": feeds,
    }


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
