"""Document → canonical bytes → hash, and the new/updated/deleted/skipped classification (no database)."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.definitions import Document, ItemStatus, StoredItem
from feeds.pipeline.diff import (
    NULL,
    Built,
    Change,
    canonical,
    classify,
    compare,
    digest,
    earlier_digest,
)

NOW = datetime(2026, 11, 22, 10, 0, 0)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def stored_from(doc: Document, deleted: bool = False) -> StoredItem:
    """The stored row of a document the destination accepted."""
    hashed = digest(NULL) if deleted else digest(canonical(doc.data))
    return StoredItem(doc.entity, hashed, deleted, ItemStatus.SENT, sent_hash=hashed)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_hash_does_not_depend_on_key_order(data: dict) -> None:
    reordered = dict(reversed(list(data.items())))
    assert digest(canonical(data)) == digest(canonical(reordered))


@given(st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=6))
def test_canonical_bytes_round_trip_to_the_same_document(data: dict) -> None:
    assert orjson.loads(canonical(data)) == data


def test_new_item_is_classified_new() -> None:
    diff = classify([Document(1, "1", {"name": "a"})], {}, NOW)
    assert [(i.id, i.change) for i in diff.changed] == [("1", Change.NEW)]


def test_unchanged_item_is_skipped_and_not_exported() -> None:
    doc = Document(1, "1", {"name": "a", "tags": [1, 2]})
    diff = classify([doc], {"1": stored_from(doc)}, NOW)
    assert diff.changed == [] and diff.skipped == 1


def test_changed_document_is_classified_updated() -> None:
    before = Document(1, "1", {"name": "a"})
    diff = classify([Document(1, "1", {"name": "b"})], {"1": stored_from(before)}, NOW)
    assert [i.change for i in diff.changed] == [Change.UPDATED]


def test_stored_item_not_built_again_is_deleted_with_null_data() -> None:
    gone = Document(2, "2", {"name": "gone"})
    diff = classify([], {"2": stored_from(gone)}, NOW)
    [item] = diff.changed
    assert (item.id, item.change, item.deleted, item.body) == ("2", Change.DELETED, True, b"null")
    envelope = orjson.loads(item.envelope())
    assert envelope == {
        "id": "2",
        "deleted": True,
        "modifiedAt": "2026-11-22T10:00:00.000Z",
        "hash": item.hash,
        "data": None,
    }


def test_item_already_deleted_is_not_deleted_again() -> None:
    gone = Document(2, "2", {"name": "gone"})
    assert classify([], {"2": stored_from(gone, deleted=True)}, NOW).changed == []


def test_item_coming_back_after_delete_is_new() -> None:
    doc = Document(2, "2", {"name": "back"})
    diff = classify([doc], {"2": stored_from(doc, deleted=True)}, NOW)
    assert [i.change for i in diff.changed] == [Change.NEW]


def test_envelope_carries_the_hashed_document() -> None:
    doc = Document(7, "sku-7", {"b": 1, "a": "é"}, updated_at=NOW)
    [item] = classify([doc], {}, NOW).changed
    envelope = orjson.loads(item.envelope())
    assert envelope["data"] == {"a": "é", "b": 1}
    assert envelope["hash"] == digest(canonical(doc.data))
    assert set(envelope) == {"id", "deleted", "modifiedAt", "hash", "data"}


@given(
    st.lists(st.tuples(st.integers(0, 20), json_values), max_size=15),
    st.sets(st.integers(0, 20), max_size=10),
)
def test_every_item_is_classified_exactly_once(built: list, previously: set) -> None:
    docs = [Document(k, str(k), {"v": v}) for k, v in built]
    stored = {str(k): StoredItem(k, "old-hash", False, ItemStatus.SENT) for k in previously}
    diff = classify(docs, stored, NOW)
    ids = {d.id for d in docs}
    assert diff.skipped + len(diff.changed) == len(ids | set(stored))
    assert {i.id for i in diff.changed if i.change is Change.DELETED} == set(stored) - ids
    assert {i.id for i in diff.changed if i.change is Change.NEW} == ids - set(stored)


def test_resend_names_an_unchanged_item_and_a_deletion_to_send_again() -> None:
    kept = Document(1, "1", {"name": "a"})
    gone = Document(2, "2", {"name": "b"})
    stored = {"1": stored_from(kept), "2": stored_from(gone, deleted=True)}
    diff = classify([kept], stored, NOW, resend={"1", "2"})
    assert sorted((i.id, i.change, i.deleted) for i in diff.changed) == [
        ("1", Change.RESENT, False),
        ("2", Change.RESENT, True),
    ]
    assert diff.skipped == 0


def stored_state(doc: Document, status: ItemStatus | None, sent: Document | None) -> StoredItem:
    """A stored row of `doc` at `status`; the destination last accepted `sent` (None: nothing)."""
    sent_hash = digest(canonical(sent.data)) if sent is not None else None
    return StoredItem(doc.entity, digest(canonical(doc.data)), False, status, sent_hash=sent_hash)


@pytest.mark.parametrize(
    "status", [ItemStatus.RETRYABLE, ItemStatus.APP_ERROR, ItemStatus.SKIPPED, None]
)
def test_an_unchanged_item_whose_last_send_did_not_settle_is_sent_again(
    status: ItemStatus | None,
) -> None:
    before, now = Document(1, "1", {"v": 1}), Document(1, "1", {"v": 2})
    diff = classify([now], {"1": stored_state(now, status, sent=before)}, NOW)
    assert [(i.id, i.change) for i in diff.changed] == [("1", Change.RESENT)]
    # Legacy collection keeps it for the exporter job instead.
    collected = classify([now], {"1": stored_state(now, status, sent=before)}, NOW, sending=False)
    assert collected.changed == [] and collected.skipped == 1


def test_a_rejected_unchanged_item_is_not_sent_again_until_it_changes() -> None:
    doc = Document(1, "1", {"v": 1})
    diff = classify([doc], {"1": stored_state(doc, ItemStatus.REJECTED, sent=None)}, NOW)
    assert diff.changed == [] and diff.skipped == 1


def test_an_unsettled_item_the_destination_already_holds_is_restored_not_sent() -> None:
    doc = Document(1, "1", {"v": 1})
    diff = classify([doc], {"1": stored_state(doc, ItemStatus.APP_ERROR, sent=doc)}, NOW)
    assert diff.changed == [] and [i.id for i in diff.restored] == ["1"]


def test_an_item_changed_back_to_what_the_destination_holds_is_restored() -> None:
    accepted, failed = Document(1, "1", {"v": 1}), Document(1, "1", {"v": 2})
    stored = {"1": stored_state(failed, ItemStatus.RETRYABLE, sent=accepted)}
    diff = classify([accepted], stored, NOW)
    assert diff.changed == [] and [i.hash for i in diff.restored] == [
        digest(canonical(accepted.data))
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"price": float("nan")}, "price is nan: NaN and infinite numbers cannot be exported"),
        ({"v": [{"p": 1.5}, {"p": float("-inf")}]}, "v[1].p is -inf: NaN and infinite"),
        ({"name": "bad \udcff"}, "the document cannot be encoded as JSON: str is not valid UTF-8"),
    ],
)
def test_a_document_json_cannot_carry_is_an_error_of_its_item_alone(
    data: dict, reason: str
) -> None:
    good = Document(1, "1", {"price": 1.5, "name": None})
    diff = classify([good, Document(2, "2", data)], {}, NOW)
    assert [i.id for i in diff.changed] == ["1"]
    entity, message = diff.unexportable["2"]
    assert entity == 2 and message.startswith(reason)


def test_an_item_stored_with_the_earlier_hash_is_unchanged_and_gets_todays_hash() -> None:
    """Upgrading changes the hash function once: unchanged items are not resent for it."""
    doc, gone = Document(1, "1", {"name": "a"}), Document(2, "2", {"name": "b"})
    earlier = earlier_digest(canonical(doc.data))
    stored = {
        "1": StoredItem(1, earlier, False, ItemStatus.SENT, sent_hash=earlier),
        "2": StoredItem(2, earlier_digest(NULL), True, ItemStatus.SENT),
    }
    diff = classify([doc], stored, NOW)
    assert diff.changed == [] and diff.skipped == 1
    today = digest(canonical(doc.data))
    assert diff.rehashed == {"1": (today, today), "2": (digest(NULL), None)}
    assert gone.id not in {i.id for i in diff.changed}


def test_a_document_built_by_the_database_with_a_nan_is_unexportable() -> None:
    built = Built(1, "1", None, b'{"v":[{"p":1.5},{"p":\x01-Infinity}]}', "h")
    diff = compare([built], {}, NOW)
    assert diff.changed == []
    assert diff.unexportable["1"][1].startswith("v[1].p is -inf: NaN and infinite")
