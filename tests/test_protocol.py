"""Protocol v1 (SPEC §5) as pure functions: answers → item outcomes, codes → categories, batch encoding."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from feeds.diff import Change, FeedItem
from feeds.export.protocol import (
    ErrorCategory,
    category_of,
    encode_batch,
    idempotency_key,
    interpret,
    transport_failure,
)
from feeds.store import ItemStatus

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
