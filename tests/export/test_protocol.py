"""Protocol v1 (SPEC §5) as pure functions: answers → item outcomes, codes → categories, batch encoding."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from feeds.definitions import ItemStatus
from feeds.export.protocol import (
    DEFAULT_RETRY_AFTER_S,
    MAX_RETRY_AFTER_S,
    ErrorCategory,
    category_of,
    encode_batch,
    idempotency_key,
    interpret,
    retry_after_s,
    transport_failure,
)
from feeds.pipeline.diff import Change, FeedItem

IDS = ["a", "b", "c"]


def item(item_id: str, hash_: str = "h") -> FeedItem:
    return FeedItem(item_id, 1, False, datetime(2026, 11, 22, 10), hash_, b'{"x":1}', Change.NEW)


@pytest.mark.parametrize(
    ("code", "category"),
    [
        ("MISSING_ASSOCIATION", ErrorCategory.ASSOCIATIONS),
        ("VALIDATION_RULE", ErrorCategory.CUSTOM_CODE),
        ("DUPLICATE_VALUE", ErrorCategory.DUPLICATES),
        ("PERMISSION_DENIED", ErrorCategory.PERMISSIONS),
        ("INVALID_ENUM_VALUE", ErrorCategory.PICKLISTS),
        ("UNMAPPED_FIELD", ErrorCategory.PROPERTY_MAPPINGS),
        ("TYPE_MISMATCH", ErrorCategory.PROPERTY_MAPPINGS),
        ("INVALID_VALUE", ErrorCategory.PROPERTY_VALUES),
        ("WHATEVER_ELSE", ErrorCategory.OTHER),
        (None, ErrorCategory.OTHER),
    ],
)
def test_rejection_code_maps_to_its_category(code: str | None, category: ErrorCategory) -> None:
    assert category_of(code) is category


def test_200_maps_each_item_and_treats_a_missing_one_as_retryable() -> None:
    body = orjson.dumps(
        {
            "results": [
                {"id": "a", "status": "accepted"},
                {
                    "id": "b",
                    "status": "rejected",
                    "error": {"code": "DUPLICATE_VALUE", "message": "dup"},
                },
            ]
        }
    )
    outcome = interpret(200, {"x-ratelimit-limit-day": "5000"}, body, IDS)
    assert [(r.id, r.status, r.code) for r in outcome.results] == [
        ("a", ItemStatus.SENT, None),
        ("b", ItemStatus.REJECTED, "DUPLICATE_VALUE"),
        ("c", ItemStatus.RETRYABLE, "MISSING_RESULT"),
    ]
    assert outcome.results[1].category is ErrorCategory.DUPLICATES
    assert outcome.results[2].category is ErrorCategory.TRANSIENT
    assert outcome.daily_limit == 5000


def test_200_that_is_not_json_is_retryable() -> None:
    outcome = interpret(200, {}, b"<html>", IDS)
    assert {r.status for r in outcome.results} == {ItemStatus.RETRYABLE}


@pytest.mark.parametrize(
    ("status", "item_status", "flags"),
    [
        (429, ItemStatus.RETRYABLE, {"retry_after_s": 7.0}),
        (413, ItemStatus.RETRYABLE, {"too_large": True}),
        (400, ItemStatus.REJECTED, {}),
        (404, ItemStatus.REJECTED, {}),
        (422, ItemStatus.REJECTED, {}),
        (401, ItemStatus.RETRYABLE, {"config_error": True}),
        (403, ItemStatus.RETRYABLE, {"config_error": True}),
        (500, ItemStatus.RETRYABLE, {}),
        (502, ItemStatus.RETRYABLE, {}),
        (503, ItemStatus.RETRYABLE, {}),
    ],
)
def test_whole_batch_answers(status: int, item_status: ItemStatus, flags: dict) -> None:
    outcome = interpret(status, {"retry-after": "7"}, b'{"message": "no"}', IDS)
    assert {r.status for r in outcome.results} == {item_status}
    assert all(r.code == f"HTTP_{status}" for r in outcome.results)
    assert outcome.too_large is flags.get("too_large", False)
    assert bool(outcome.config_error) is flags.get("config_error", False)
    if "retry_after_s" in flags:
        assert outcome.retry_after_s == flags["retry_after_s"]
    if status in (400, 404, 422):
        assert outcome.results[0].message == '{"message": "no"}'


def test_transport_failure_is_retryable() -> None:
    assert {r.status for r in transport_failure(IDS, "timed out").results} == {ItemStatus.RETRYABLE}


NOW = datetime(2026, 11, 22, 10, 0, 0)  # naive UTC, as the worker's clock gives it


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("0.4", 0.4),
        (" 120 ", 120.0),
        ("Sun, 22 Nov 2026 10:00:30 GMT", 30.0),  # IMF-fixdate
        ("Sunday, 22-Nov-26 10:01:00 GMT", 60.0),  # obsolete RFC 850
        ("Sun Nov 22 10:00:05 2026", 5.0),  # obsolete asctime
        ("Sun, 22 Nov 2026 09:59:00 GMT", 0.0),  # already past: the wait is over
        ("Sun, 22 Nov 2026 11:00:00 +0100", 0.0),  # an offset other than GMT is still a moment
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert retry_after_s(value, None, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", "Sun, 99 Foo 2026"])
def test_retry_after_absent_or_unreadable_pauses_for_the_default(value: str | None) -> None:
    assert retry_after_s(value, None, NOW) == DEFAULT_RETRY_AFTER_S


def test_retry_after_date_is_read_against_the_answers_own_date() -> None:
    # The destination's clock is 2 minutes behind ours: its Date header, not our clock, is the origin.
    wait = retry_after_s("Sun, 22 Nov 2026 09:58:10 GMT", "Sun, 22 Nov 2026 09:58:00 GMT", NOW)
    assert wait == 10.0


def test_retry_after_is_capped_and_a_date_without_a_clock_is_the_default() -> None:
    assert retry_after_s("86400", None, NOW) == MAX_RETRY_AFTER_S
    assert retry_after_s("Sun, 22 Nov 2026 10:00:30 GMT", None, None) == DEFAULT_RETRY_AFTER_S


def test_429_with_an_http_date_pauses_until_that_date() -> None:
    headers = {"retry-after": "Sun, 22 Nov 2026 10:00:42 GMT"}
    outcome = interpret(429, headers, b"", IDS, now=NOW)
    assert outcome.retry_after_s == 42.0
    assert {r.status for r in outcome.results} == {ItemStatus.RETRYABLE}


def test_429_without_retry_after_still_pauses() -> None:
    assert interpret(429, {}, b"", IDS, now=NOW).retry_after_s == DEFAULT_RETRY_AFTER_S


def test_idempotency_key_is_the_same_only_for_the_same_batch_and_attempt() -> None:
    batch = [item("a"), item("b")]
    key = idempotency_key("products", batch, "attempt-1")
    assert key == idempotency_key("products", [item("a"), item("b")], "attempt-1")
    assert key != idempotency_key("products", batch, "attempt-2")
    assert key != idempotency_key("prices", batch, "attempt-1")
    assert key != idempotency_key("products", [item("a"), item("b", "h2")], "attempt-1")


def test_batch_body_is_the_protocol_document() -> None:
    body = orjson.loads(encode_batch([item("a"), item("b")]))
    assert [i["id"] for i in body["items"]] == ["a", "b"]
    assert body["items"][0] == {
        "id": "a",
        "deleted": False,
        "modifiedAt": "2026-11-22T10:00:00.000Z",
        "hash": "h",
        "data": {"x": 1},
    }
