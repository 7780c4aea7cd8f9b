"""Document → canonical bytes → hash, and the classification of each item: new, updated, deleted, skipped.

Pure functions: no database, no clock (callers pass `now`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from hashlib import blake2b, md5
from typing import Any, NamedTuple

import orjson

from feeds.definitions import SETTLED, Document, StoredItem
from feeds.documents import NOT_FINITE_BYTE

NULL = b"null"


class Change(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    DELETED = "deleted"
    SKIPPED = "skipped"
    RESENT = "resent"  # unchanged, but sent again (its last send failed, or a resync asked for it)


class UnexportableValue(ValueError):
    """A document that cannot be exported as built: an application error of its item."""


def canonical(data: Any) -> bytes:
    """The canonical JSON of a document: sorted keys, no whitespace, UTF-8 (what is hashed and sent).

    Raises UnexportableValue for what JSON cannot carry faithfully: orjson writes NaN and Infinity
    as null, which would send a wrong value as a good one.
    """
    try:
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        raise UnexportableValue(f"the document cannot be encoded as JSON: {exc}") from None
    if b"null" in body and (found := _non_finite(data)) is not None:  # null is rare: walk only then
        path, value = found
        raise UnexportableValue(
            f"{path or 'the document'} is {value}: NaN and infinite numbers cannot be exported; "
            "accepted: finite numbers or null"
        )
    return body


def unexportable_reason(body: bytes) -> str | None:
    """Why a body built by the database cannot be exported (a NaN or infinite number), if it cannot."""
    if NOT_FINITE_BYTE not in body:
        return None
    found = _non_finite(json.loads(body.replace(NOT_FINITE_BYTE, b"")))
    path, value = found if found is not None else ("", math.nan)
    return (
        f"{path or 'the document'} is {value}: NaN and infinite numbers cannot be exported; "
        "accepted: finite numbers or null"
    )


def _non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The path and value of the first NaN or infinite number in a document, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        children = ((f"{path}.{key}" if path else str(key), v) for key, v in value.items())
    elif isinstance(value, (list, tuple)):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for child_path, child in children:
        if (found := _non_finite(child, child_path)) is not None:
            return found
    return None


def digest(body: bytes) -> str:
    """A 128-bit content hash, hex: md5, which both databases compute for documents they build
    (feeds.documents). Change detection, not security: an item's author cannot make another's
    document collide, and a collision would at worst leave one update unsent."""
    return md5(body, usedforsecurity=False).hexdigest()


def earlier_digest(body: bytes) -> str:
    """The hash that versions before documents were built by the database stored (BLAKE2b-128):
    an item still stored with it is unchanged when it is the digest of the same body."""
    return blake2b(body, digest_size=16).hexdigest()


class Built(NamedTuple):
    """One item as built, ready to compare: the canonical JSON `body` and its `hash`.

    The per-item values of a batch are named tuples: made per item on every sync, they cost a
    third of a frozen dataclass."""

    entity: int
    id: str
    updated_at: datetime | None
    body: bytes
    hash: str


class FeedItem(NamedTuple):
    """A changed item to export: `body` is the canonical JSON of `data` (b"null" when deleted)."""

    id: str
    entity: int
    deleted: bool
    modified_at: datetime
    hash: str
    body: bytes
    change: Change

    def envelope(self) -> bytes:
        """The item as sent: `{"id","deleted","modifiedAt","hash","data"}`, reusing the hashed bytes."""
        return b"".join(
            (
                b'{"id":',
                orjson.dumps(self.id),
                b',"deleted":',
                b"true" if self.deleted else b"false",
                b',"modifiedAt":"',
                _iso_bytes(self.modified_at),
                b'","hash":"',
                self.hash.encode(),
                b'","data":',
                self.body,
                b"}",
            )
        )


@dataclass
class Diff:
    """The outcome of comparing one batch of built documents with the feed table."""

    changed: list[FeedItem] = field(default_factory=list)
    skipped: int = 0
    newest_update: datetime | None = None
    # Unsent, but the destination already holds this very version: record them as sent.
    restored: list[FeedItem] = field(default_factory=list)
    # Items whose document cannot be exported as built (e.g. a NaN): id → (entity, reason).
    unexportable: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Unchanged items stored with their earlier-version hash: id → (hash, sent hash) to store.
    rehashed: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def count(self, change: Change) -> int:
        return sum(1 for item in self.changed if item.change is change)


def canonical_items(documents: Iterable[Document], diff: Diff) -> Iterator[Built]:
    """Built items of Python documents: canonical bytes and hash (the first of a repeated id);
    a document that cannot be encoded goes to `diff.unexportable`."""
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            continue  # a builder yielding an id twice: the first one wins, deterministically
        seen.add(doc.id)
        try:
            body = canonical(doc.data)
        except UnexportableValue as exc:
            diff.unexportable[doc.id] = (doc.entity, str(exc))
            _newest(diff, doc.updated_at)
            continue
        yield Built(doc.entity, doc.id, doc.updated_at, body, digest(body))


def classify(
    documents: Iterable[Document],
    stored: Mapping[str, StoredItem],
    now: datetime,
    resend: Collection[str] = (),
    *,
    sending: bool = True,
) -> Diff:
    """Compare documents built in Python with stored rows of the same entities (see `compare`)."""
    diff = Diff()
    return compare(
        canonical_items(documents, diff), stored, now, resend, sending=sending, diff=diff
    )


def compare(
    built: Iterable[Built],
    stored: Mapping[str, StoredItem],
    now: datetime,
    resend: Collection[str] = (),
    *,
    sending: bool = True,
    diff: Diff | None = None,
) -> Diff:
    """Compare built items with stored rows of the same entities.

    A stored item that was not built again is deleted (unless already marked so); a built item is
    new when not stored (or stored as deleted), updated when its hash differs, skipped otherwise.
    An unchanged item whose last send did not settle it (failed, never sent, skipped) is sent again
    when `sending`, unless the destination already holds that version (its last accepted hash):
    then it is `restored`, recorded as sent without a request. Items named in `resend` are sent
    again whatever their state (RESENT), deletions included.
    """
    diff = Diff() if diff is None else diff
    seen: set[str] = set()
    for b in built:
        if b.id in seen:
            continue  # the first of a repeated id wins, deterministically
        seen.add(b.id)
        _newest(diff, b.updated_at)
        if (reason := unexportable_reason(b.body)) is not None:
            diff.unexportable[b.id] = (b.entity, reason)
            continue
        item = FeedItem(b.id, b.entity, False, now, b.hash, b.body, Change.NEW)
        _compare(diff, item, stored.get(b.id), b.id in resend, sending)
    for item_id, previous in stored.items():
        if item_id in seen or item_id in diff.unexportable:
            continue
        item = FeedItem(item_id, previous.entity, True, now, DELETED_HASH, NULL, Change.DELETED)
        _compare(diff, item, previous, item_id in resend, sending)
    return diff


DELETED_HASH = digest(NULL)


def _newest(diff: Diff, updated_at: datetime | None) -> None:
    if updated_at is not None and (diff.newest_update is None or updated_at > diff.newest_update):
        diff.newest_update = updated_at


def _same(stored_hash: str | None, item: FeedItem) -> bool:
    """Whether a stored hash is the item's: its hash, or the earlier-version digest of its body."""
    if stored_hash is None:
        return False
    return stored_hash == item.hash or (
        len(stored_hash) == len(item.hash) and stored_hash == earlier_digest(item.body)
    )


def _compare(
    diff: Diff, item: FeedItem, previous: StoredItem | None, resend: bool, sending: bool
) -> None:
    """Sort one built item, or one stored item gone from the source, into the diff."""
    if previous is None:
        diff.changed.append(item)  # new
    elif previous.deleted == item.deleted and _same(previous.hash, item):  # unchanged
        if previous.hash != item.hash:  # stored by an earlier version: store today's hash
            sent = item.hash if _same(previous.sent_hash, item) else previous.sent_hash
            diff.rehashed[item.id] = (item.hash, sent)
        if resend:
            diff.changed.append(item._replace(change=Change.RESENT))
        elif previous.status in SETTLED or not sending:
            diff.skipped += 0 if item.deleted else 1  # a settled tombstone is no item to count
        elif _same(previous.sent_hash, item):
            diff.restored.append(item)
        else:
            diff.changed.append(item._replace(change=Change.RESENT))  # its last send did not settle
    elif _same(previous.sent_hash, item) and not resend:
        diff.restored.append(item)  # changed back to the version the destination holds
    elif item.deleted:
        diff.changed.append(item)  # deleted
    else:
        diff.changed.append(
            item._replace(change=Change.NEW if previous.deleted else Change.UPDATED)
        )


@lru_cache(maxsize=64)
def _iso_bytes(moment: datetime) -> bytes:
    """`iso` as bytes, once per moment: the items of a batch share theirs (when it was compared)."""
    return iso(moment).encode()


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z, millisecond precision (naive datetimes are UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
