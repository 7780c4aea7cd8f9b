"""Error notifications (SPEC §6): immediate notices and daily or weekly digests, POSTed as JSON to a
webhook by the `sync_error_notifications` job.

Every notice is a row of the worker database with a unique key before anything is sent, so a new
error category or a failed run is notified once whatever the number of workers, and a webhook that
fails keeps the notice pending for the next job run. Deciding what is due and writing the message
are plain functions (the bottom of this module); the rest reads and writes the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import (
    func,
    or_,
    select,
    update,
)

from feeds.clock import utcnow
from feeds.context import Context
from feeds.errors import ConfigError, WebhookError
from feeds.notify.messages import json_default, notice_body
from feeds.notify.settings import EVENT_KINDS, Frequency, NoticeKind, current_settings
from feeds.notify.tracking import (
    _record_digest,
    _roll_up_days,
    _set_mark,
    _track_categories,
    _track_failed_runs,
)
from feeds.state.tables import notices
from feeds.urls import host_of

log = structlog.get_logger("feeds.notifications")

CLAIM = timedelta(minutes=2)  # a worker that died mid-POST frees its notices after this
EVENTS_PER_POST = 100
KEEP_SENT = timedelta(days=30)
WEBHOOK_TIMEOUT_S = 10.0


# --- tables ------------------------------------------------------------------------------------


# --- settings ----------------------------------------------------------------------------------


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
        content=json.dumps(body, default=json_default).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "feedsync/0.1"},
        timeout=WEBHOOK_TIMEOUT_S,
    )
    response.raise_for_status()


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
            webhook=host_of(url),
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
    log.info("notifications.sent", webhook=host_of(url), type=body.get("type"), notices=len(ids))
    return True


def send_test(ctx: Context, post: Post | None = None) -> str:
    """POST a test notice to the webhook in force (whatever the frequency); the sentence saying it
    was taken. ConfigError without a webhook URL, WebhookError when it did not answer 2xx."""
    url = current_settings(ctx).webhook_url
    if url is None:
        raise ConfigError(
            "No webhook URL is set: save one in the notification settings, then send the test."
        )
    now = utcnow()
    body = {
        "type": "test",
        "generated_at": now.isoformat(timespec="seconds") + "Z",
        "text": "A test notification from Feedsync: this webhook receives its error notifications.",
    }
    try:
        (post or post_json)(url, body)
    except (httpx.HTTPError, OSError) as exc:
        log.warning("notifications.test_failed", webhook=host_of(url), error=_describe(exc))
        raise WebhookError(
            f"The test notification to {host_of(url)} failed: {_describe(exc)}."
        ) from None
    log.info("notifications.test_sent", webhook=host_of(url))
    return f"A test notification was sent to {host_of(url)}, which answered 2xx."


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from the webhook"
    return f"{type(exc).__name__}: {exc}"[:500]


# --- pure: what is due, and what the message says ----------------------------------------------
