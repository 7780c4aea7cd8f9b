"""Destination protocol v1 (SPEC §5): encoding a batch, and the one place that maps answers to outcomes.

Pure functions: no sockets, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from hashlib import blake2b
from typing import Any, NamedTuple

import orjson

from feeds.definitions import ItemStatus
from feeds.pipeline.diff import FeedItem


class ErrorCategory(StrEnum):
    ASSOCIATIONS = "associations"
    CUSTOM_CODE = "custom_code"
    DUPLICATES = "duplicates"
    PERMISSIONS = "permissions"
    PICKLISTS = "picklists"
    PROPERTY_MAPPINGS = "property_mappings"
    PROPERTY_VALUES = "property_values"
    OTHER = "other"
    TRANSIENT = "transient"


CATEGORY_OF_CODE: dict[str, ErrorCategory] = {
    "MISSING_ASSOCIATION": ErrorCategory.ASSOCIATIONS,
    "VALIDATION_RULE": ErrorCategory.CUSTOM_CODE,
    "DUPLICATE_VALUE": ErrorCategory.DUPLICATES,
    "PERMISSION_DENIED": ErrorCategory.PERMISSIONS,
    "INVALID_ENUM_VALUE": ErrorCategory.PICKLISTS,
    "UNMAPPED_FIELD": ErrorCategory.PROPERTY_MAPPINGS,
    "TYPE_MISMATCH": ErrorCategory.PROPERTY_MAPPINGS,
    "INVALID_VALUE": ErrorCategory.PROPERTY_VALUES,
}


def category_of(code: str | None) -> ErrorCategory:
    """The error category of a rejection code; unknown codes are `other`."""
    return CATEGORY_OF_CODE.get(code or "", ErrorCategory.OTHER)


class ItemResult(NamedTuple):
    """What the destination said about one item: `status` is the code stored in the feed table."""

    id: str
    status: ItemStatus
    code: str | None = None
    message: str | None = None
    # What the destination named, when it did: the field (property) it refused, and the value
    # (the rejected value, or the record a missing association points to).
    field: str | None = None
    value: str | None = None

    @property
    def category(self) -> ErrorCategory | None:
        if self.status in (ItemStatus.SENT, ItemStatus.SKIPPED):
            return None
        if self.status is ItemStatus.RETRYABLE:
            return ErrorCategory.TRANSIENT
        return category_of(self.code)


@dataclass(frozen=True)
class BatchOutcome:
    """The answer to one batch: a result per item, plus what the sender must do next."""

    results: list[ItemResult]
    retry_after_s: float | None = None  # 429: wait at least this long before sending again
    config_error: str | None = None  # 401/403: stop sending to this destination in this run
    too_large: bool = False  # 413: split the batch and send the halves
    daily_limit: int | None = None  # X-RateLimit-Limit-Day
    calls: int = 1  # requests this batch cost (a split costs several)
    paused: str | None = None  # the API-call budget is used up: not sent, why (items status -1)
    notes: list[str] = field(default_factory=list)


MAX_ERROR_TEXT = 500
# A 429 without a readable Retry-After still pauses the destination: waiting a little beats hammering.
DEFAULT_RETRY_AFTER_S = 5.0
# A Retry-After past this (a bogus far-future date) is read as this: the destination can say so again.
MAX_RETRY_AFTER_S = 3600.0


def encode_batch(items: Sequence[FeedItem]) -> bytes:
    """The request body `{"items": [...]}`, from each item's already-encoded envelope."""
    return b'{"items":[' + b",".join(item.envelope() for item in items) + b"]}"


def idempotency_key(feed: str, items: Sequence[FeedItem], attempt: str) -> str:
    """The key of one attempt to send this batch: the same only for the same batch and `attempt`.

    `attempt` is a nonce the sender draws once per attempt and keeps for that attempt's retries
    (timeout, 5xx, 429): a destination that replays answers by key then replays an answer only to
    a retry, never an old rejection to a new attempt (the next run, a resend, a resync).
    """
    digest = blake2b(feed.encode() + b"\0" + attempt.encode(), digest_size=16)
    for item in items:
        digest.update(b"\0" + item.id.encode() + b"\0" + item.hash.encode())
    return digest.hexdigest()


def interpret(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    ids: Sequence[str],
    now: datetime | None = None,
) -> BatchOutcome:
    """Map an HTTP answer to a batch of `ids` onto per-item outcomes, as the table of SPEC §5 says.

    `now` (UTC) is when the answer arrived: a 429's Retry-After date is read against it when the
    answer has no Date header.
    """
    limit = _int(headers.get("x-ratelimit-limit-day"))
    if status == 200:
        return BatchOutcome(_per_item(body, ids), daily_limit=limit)
    text = body[:MAX_ERROR_TEXT].decode("utf-8", "replace")
    if status == 429:
        wait = retry_after_s(headers.get("retry-after"), headers.get("date"), now)
        return BatchOutcome(
            _all(ids, ItemStatus.RETRYABLE, "HTTP_429", f"rate limited: asked to wait {wait:g} s"),
            retry_after_s=wait,
            daily_limit=limit,
        )
    if status == 413:
        return BatchOutcome(
            _all(ids, ItemStatus.RETRYABLE, "HTTP_413", "batch too large"),
            too_large=True,
            daily_limit=limit,
        )
    if status in (401, 403):
        message = f"the destination refused our credentials (HTTP {status}): {text}"
        return BatchOutcome(
            _all(ids, ItemStatus.RETRYABLE, f"HTTP_{status}", message),
            config_error=message,
            daily_limit=limit,
        )
    if 400 <= status < 500:
        return BatchOutcome(
            _all(ids, ItemStatus.REJECTED, f"HTTP_{status}", text), daily_limit=limit
        )
    return BatchOutcome(_all(ids, ItemStatus.RETRYABLE, f"HTTP_{status}", text), daily_limit=limit)


def retry_after_s(value: str | None, date: str | None, now: datetime | None) -> float:
    """Seconds a 429's Retry-After asks to wait: delay-seconds, or an HTTP date (RFC 9110 §10.2.3).

    A date is measured from the answer's own `Date` header when it has one (no clock skew), else from
    `now`. Absent or unreadable: DEFAULT_RETRY_AFTER_S; a date already past: 0; at most MAX_RETRY_AFTER_S.
    """
    text = (value or "").strip()
    try:
        # delay-seconds; fractions too, which test destinations use to ask for short waits
        seconds = float(text)
    except ValueError:
        until = _http_date(text)
        since = _http_date(date) or _aware(now)
        if until is None or since is None:
            return DEFAULT_RETRY_AFTER_S
        seconds = max(0.0, (until - since).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return DEFAULT_RETRY_AFTER_S
    return min(seconds, MAX_RETRY_AFTER_S)


def transport_failure(ids: Sequence[str], message: str) -> BatchOutcome:
    """A timeout or connection error: the whole batch is retryable."""
    return BatchOutcome(_all(ids, ItemStatus.RETRYABLE, "TRANSPORT", message))


def budget_exhausted(ids: Sequence[str], reason: str) -> BatchOutcome:
    """No request made: the API-call budget is used up. Every item waits (-1) for the window to free."""
    return BatchOutcome(
        _all(ids, ItemStatus.SKIPPED, "BUDGET_EXHAUSTED", reason), calls=0, paused=reason
    )


def _per_item(body: bytes, ids: Sequence[str]) -> list[ItemResult]:
    try:
        answered = orjson.loads(body).get("results", [])
    except (orjson.JSONDecodeError, AttributeError):
        return _all(
            ids,
            ItemStatus.RETRYABLE,
            "BAD_RESPONSE",
            "the destination's 200 answer is not the expected JSON",
        )
    by_id: dict[str, ItemResult] = {}
    for entry in answered if isinstance(answered, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if entry.get("status") == "accepted":
            by_id[entry["id"]] = ItemResult(entry["id"], ItemStatus.SENT)
        elif entry.get("status") == "rejected":
            error = entry.get("error")
            error = error if isinstance(error, dict) else {}
            message = str(error.get("message") or "")[:MAX_ERROR_TEXT]
            by_id[entry["id"]] = ItemResult(
                entry["id"],
                ItemStatus.REJECTED,
                str(error.get("code") or "UNKNOWN"),
                message,
                *named_field(error, message),
            )
    missing = "missing from the destination's results"
    return [
        by_id.get(item_id) or ItemResult(item_id, ItemStatus.RETRYABLE, "MISSING_RESULT", missing)
        for item_id in ids
    ]


# "property 'color'", 'field "category_id"', "Property color": the name a message gives.
_FIELD_IN_MESSAGE = re.compile(r"""\b(?:field|property)\s+['"`]?([A-Za-z_][\w.\-]{0,99})""", re.I)


def named_field(error: Mapping[str, Any], message: str) -> tuple[str | None, str | None]:
    """The field and value a rejection names: `error.field` and `error.value` (protocol v1), or
    HubSpot's `context.propertyName` and `context.value`, else a field named in the message."""
    context = error.get("context")
    context = context if isinstance(context, Mapping) else {}
    field = _text(error.get("field")) or _text(context.get("propertyName"))
    value = _text(error.get("value")) or _text(context.get("value"))
    if field is None:
        found = _FIELD_IN_MESSAGE.search(message)
        field = found.group(1) if found else None
    return (field[:200] if field else None), (value[:500] if value else None)


def _text(value: object) -> str | None:
    """A string, or the first of a list of them (HubSpot's context lists); None otherwise."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value).strip() or None


def _all(ids: Sequence[str], status: ItemStatus, code: str, message: str) -> list[ItemResult]:
    return [ItemResult(item_id, status, code, message) for item_id in ids]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _aware(now: datetime | None) -> datetime | None:
    """`now` with a time zone: naive datetimes are UTC, as everywhere in Feedsync."""
    return now if now is None or now.tzinfo is not None else now.replace(tzinfo=UTC)


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date (IMF-fixdate, RFC 850 or asctime) as an aware UTC datetime; None if it is not one."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # HTTP dates are GMT
