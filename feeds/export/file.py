"""The file destination: appends each batch to `<dir>/<feed>.jsonl`, one item envelope per line."""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from pathlib import Path

from feeds.definitions import ItemStatus
from feeds.errors import DestinationError
from feeds.export.destination import CallGate
from feeds.export.protocol import BatchOutcome, ItemResult
from feeds.pipeline.diff import FeedItem
from feeds.urls import file_destination_path


class FileDestination:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"file://{directory}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(
                f"The export directory {str(directory)!r} cannot be created: {exc.strerror}."
            ) from None

    @classmethod
    def from_url(cls, url: str) -> FileDestination:
        return cls(file_destination_path(url))

    def path(self, feed: str) -> Path:
        return self.directory / f"{feed}.jsonl"

    def send(
        self, feed: str, items: Sequence[FeedItem], gate: CallGate | None = None
    ) -> BatchOutcome:
        """Append the batch in one write; every item is accepted once it is written.

        A file write is not an API call: the call budget (`gate`) does not apply.
        """
        if not items:
            return BatchOutcome([], calls=0)
        data = b"\n".join(item.envelope() for item in items) + b"\n"
        try:
            with self.path(feed).open("ab") as handle:
                # Several processes may append to one feed file: whole batches, never interleaved lines.
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(data)
        except OSError as exc:
            raise DestinationError(
                f"Cannot write to {str(self.path(feed))!r}: {exc.strerror}."
            ) from None
        return BatchOutcome([ItemResult(item.id, ItemStatus.SENT) for item in items])

    def close(self) -> None:
        pass
