"""The exporter interface: a destination takes a batch of items and reports an outcome per item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from config.settings import Settings
from feeds.diff import FeedItem
from feeds.export.protocol import BatchOutcome


class Destination(Protocol):
    """Sends batches of one feed; reports every item of the batch. Safe to call from several threads."""

    name: str

    def send(self, feed: str, items: Sequence[FeedItem]) -> BatchOutcome: ...

    def close(self) -> None: ...


def open_destination(url: str, settings: Settings) -> Destination:
    """The destination for an EXPORT_URL (already validated by the settings)."""
    if url.startswith("file://"):
        from feeds.export.file import FileDestination

        return FileDestination.from_url(url)
    from feeds.export.http import HttpDestination

    return HttpDestination(url, token=settings.export_token, timeout_s=settings.export_timeout_s)
