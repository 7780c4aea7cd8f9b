"""Document → canonical bytes → hash, and the classification of each item: new, updated, deleted, skipped.

Pure functions: no database, no clock (callers pass `now`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from hashlib import blake2b
from typing import Any

import orjson

from feeds.definitions import Document
from feeds.store import StoredItem

NULL = b"null"


class Change(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    DELETED = "deleted"
    SKIPPED = "skipped"
    RESENT = "resent"  # unchanged, but sent again (its last send failed, or a resync asked for it)


def canonical(data: Any) -> bytes:
    """The canonical JSON of a document: sorted keys, no whitespace, UTF-8 (what is hashed and sent)."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def digest(body: bytes) -> str:
    """A 128-bit content hash, hex: collisions are not a practical concern at catalog sizes."""
    return blake2b(body, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class FeedItem:
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
                iso(self.modified_at).encode(),
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

    def count(self, change: Change) -> int:
        return sum(1 for item in self.changed if item.change is change)


def classify(
    documents: Iterable[Document],
    stored: Mapping[str, StoredItem],
    now: datetime,
    resend: Collection[str] = (),
) -> Diff:
    """Compare built documents with stored rows of the same entities.

    A stored item that was not built again is deleted (unless already marked so); a built item is
    new when not stored (or stored as deleted), updated when its hash differs, skipped otherwise.
    Items named in `resend` are sent again even when unchanged (RESENT), deletions included.
    """
    diff = Diff()
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            continue  # a builder yielding an id twice: the first one wins, deterministically
        seen.add(doc.id)
        if doc.updated_at is not None and (
            diff.newest_update is None or doc.updated_at > diff.newest_update
        ):
            diff.newest_update = doc.updated_at
        body = canonical(doc.data)
        hashed = digest(body)
        previous = stored.get(doc.id)
        if previous is not None and not previous.deleted and previous.hash == hashed:
            if doc.id in resend:
                diff.changed.append(
                    FeedItem(doc.id, doc.entity, False, now, hashed, body, Change.RESENT)
                )
            else:
                diff.skipped += 1
            continue
        change = Change.NEW if previous is None or previous.deleted else Change.UPDATED
        diff.changed.append(FeedItem(doc.id, doc.entity, False, now, hashed, body, change))
    deleted_hash = digest(NULL)
    for item_id, previous in stored.items():
        if item_id in seen:
            continue
        if not previous.deleted:
            diff.changed.append(
                FeedItem(item_id, previous.entity, True, now, deleted_hash, NULL, Change.DELETED)
            )
        elif item_id in resend:
            diff.changed.append(
                FeedItem(item_id, previous.entity, True, now, deleted_hash, NULL, Change.RESENT)
            )
    return diff


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z, millisecond precision (naive datetimes are UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
