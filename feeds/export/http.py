"""The HTTP destination: protocol v1 over httpx, with connection reuse, gzip bodies and a timeout."""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Sequence

import httpx

from feeds.clock import utcnow
from feeds.definitions import ItemStatus
from feeds.export.destination import CallGate
from feeds.export.pause import DestinationPause
from feeds.export.protocol import (
    BatchOutcome,
    ItemResult,
    budget_exhausted,
    encode_batch,
    idempotency_key,
    interpret,
    transport_failure,
)
from feeds.pipeline.diff import FeedItem

GZIP_MIN_BYTES = 1024
# Longest a sender waits for a 429's Retry-After inside one run; past it the batch stays retryable.
MAX_RETRY_AFTER_WAIT_S = 60.0


class HttpDestination:
    """Protocol v1 to one URL. `pause` is the Retry-After pause shared with every other sender to it."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = 30.0,
        max_connections: int = 16,
        pause: DestinationPause | None = None,
    ) -> None:
        self.name = url
        headers = {"Content-Type": "application/json", "User-Agent": "feedsync/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=url,
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._timeout_s = timeout_s
        self._pause = pause or DestinationPause(None, url)

    def send(
        self, feed: str, items: Sequence[FeedItem], gate: CallGate | None = None
    ) -> BatchOutcome:
        """Post one batch; a 413 splits it in halves until the parts fit. `gate` is asked before each request.

        Each call is a new attempt with Idempotency-Keys of its own (SPEC §5).
        """
        return self._send(feed, items, gate, attempt=uuid.uuid4().hex)

    def _send(
        self, feed: str, items: Sequence[FeedItem], gate: CallGate | None, attempt: str
    ) -> BatchOutcome:
        if not items:
            return BatchOutcome([], calls=0)
        ids = [item.id for item in items]
        if (left := self._wait_for_pause()) > 0:
            message = f"rate limited: not sent, the destination asked to wait {left:.0f} s more"
            return BatchOutcome(_all(ids, "HTTP_429", message), retry_after_s=left, calls=0)
        outcome = self._post(feed, items, ids, gate, attempt)
        if outcome.retry_after_s is not None:
            self._pause.extend(outcome.retry_after_s)
        if not outcome.too_large:
            return outcome
        if len(items) == 1:
            rejected = [
                ItemResult(
                    ids[0],
                    ItemStatus.REJECTED,
                    "TOO_LARGE",
                    "the item alone is larger than the destination accepts",
                )
            ]
            return BatchOutcome(rejected, daily_limit=outcome.daily_limit)
        half = len(items) // 2
        first = self._send(feed, items[:half], gate, attempt)
        second = self._send(feed, items[half:], gate, attempt)
        return BatchOutcome(
            first.results + second.results,
            retry_after_s=_max(first.retry_after_s, second.retry_after_s),
            config_error=first.config_error or second.config_error,
            daily_limit=second.daily_limit or first.daily_limit,
            calls=1 + first.calls + second.calls,
            paused=first.paused or second.paused,
        )

    def _wait_for_pause(self) -> float:
        """Sleep through the destination's pause if it ends within MAX_RETRY_AFTER_WAIT_S; else the seconds left."""
        deadline = time.monotonic() + MAX_RETRY_AFTER_WAIT_S
        fresh = False
        while (wait := self._pause.remaining_s(fresh=fresh)) > 0:
            if time.monotonic() + wait > deadline:
                return wait
            time.sleep(wait)
            fresh = True  # another sender may have met a 429 meanwhile and extended the pause
        return 0.0

    def _post(
        self,
        feed: str,
        items: Sequence[FeedItem],
        ids: list[str],
        gate: CallGate | None,
        attempt: str,
    ) -> BatchOutcome:
        if gate is not None and (refused := gate.acquire()) is not None:
            return budget_exhausted(ids, refused)
        body = encode_batch(items)
        headers = {"Idempotency-Key": idempotency_key(feed, items, attempt)}
        if len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            with self._client.stream(
                "POST", f"/feeds/{feed}", content=body, headers=headers
            ) as response:
                try:
                    content = response.read()
                except httpx.DecodingError as exc:
                    # A body its Content-Encoding does not describe: the status still counts, the
                    # body cannot (a 200 without readable results is retryable).
                    content = f"the answer's body could not be decoded: {exc}".encode()
        except httpx.TimeoutException:
            return transport_failure(ids, f"no answer within {self._timeout_s:g} s")
        except httpx.TransportError as exc:
            return transport_failure(ids, f"connection error: {type(exc).__name__}: {exc}")
        return interpret(response.status_code, response.headers, content, ids, now=utcnow())

    def close(self) -> None:
        self._client.close()


def _all(ids: Sequence[str], code: str, message: str) -> list[ItemResult]:
    return [ItemResult(item_id, ItemStatus.RETRYABLE, code, message) for item_id in ids]


def _max(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None
