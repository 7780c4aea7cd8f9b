"""Document → canonical bytes → hash, and the new/updated/deleted/skipped classification (no database)."""

from __future__ import annotations

from datetime import datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from feeds.definitions import Document
from feeds.diff import Change, canonical, classify, digest
from feeds.store import StoredItem

NOW = datetime(2026, 11, 22, 10, 0, 0)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def stored_from(doc: Document, deleted: bool = False) -> StoredItem:
    return StoredItem(doc.entity, digest(canonical(doc.data)), deleted)


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
    stored = {str(k): StoredItem(k, "old-hash", False) for k in previously}
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
