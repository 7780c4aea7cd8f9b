"""The exporter interface: a destination takes a batch of items and reports an outcome per item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from feeds.diff import FeedItem
from feeds.errors import DestinationError
from feeds.store import ItemStatus


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the destination said about one item: `status` is the code stored in the feed table."""

    id: str
    status: ItemStatus
    code: str | None = None
    message: str | None = None


class Destination(Protocol):
    """Sends batches of one feed; must report every item of the batch, in any order."""

    name: str

    def send(self, feed: str, items: Sequence[FeedItem]) -> list[ItemResult]: ...

    def close(self) -> None: ...


def open_destination(url: str) -> Destination:
    """The destination for an EXPORT_URL (already validated by the settings)."""
    if url.startswith("file://"):
        from feeds.export.file import FileDestination

        return FileDestination.from_url(url)
    raise DestinationError(
        f"EXPORT_URL {url!r} names an HTTP destination, which this version cannot send to yet; accepted: file:// URLs."
    )
