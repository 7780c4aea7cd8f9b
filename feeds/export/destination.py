"""The exporter interface: a destination takes a batch of items and reports an outcome per item."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine

from feeds.export.protocol import BatchOutcome
from feeds.pipeline.diff import FeedItem


class CallGate(Protocol):
    """Asked before every request to a destination: the API-call budget (feeds/budget.py)."""

    def acquire(self) -> str | None:
        """Count one call and return None; or return why no call may be made now."""
        ...

    def observe_limit(self, limit: int) -> None:
        """The destination's daily limit, from its X-RateLimit-Limit-Day header."""
        ...

    def resumes_at(self) -> datetime | None:
        """When calls may be made again, once `acquire` refused."""
        ...


class Destination(Protocol):
    """Sends batches of one feed; reports every item of the batch. Safe to call from several threads.

    A destination that makes API calls asks `gate` before each one (a 413 split included). Each
    `send` is a new attempt: an HTTP destination gives it Idempotency-Keys of its own, kept only by
    the retries it makes inside that call.
    """

    name: str

    def send(
        self, feed: str, items: Sequence[FeedItem], gate: CallGate | None = None
    ) -> BatchOutcome: ...

    def close(self) -> None: ...


def open_destination(
    url: str, *, token: str | None = None, timeout_s: float = 30, db: Engine | None = None
) -> Destination:
    """The destination for an EXPORT_URL (already validated by the settings).

    `db`, the worker database, shares an HTTP destination's Retry-After pause with every sender.
    """
    if url.startswith("file://"):
        from feeds.export.file import FileDestination

        return FileDestination.from_url(url)
    from feeds.export.http import HttpDestination
    from feeds.export.pause import DestinationPause

    return HttpDestination(
        url,
        token=token,
        timeout_s=timeout_s,
        pause=DestinationPause(db, url),
    )
