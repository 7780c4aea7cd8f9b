"""What is due and what the message says: plain functions, no database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from feeds.definitions import RunStatus
from feeds.export.protocol import ErrorCategory
from feeds.history.categories import help_for
from feeds.notify.settings import Frequency, NoticeKind, NotificationConfig


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


def json_default(value: object) -> str:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
