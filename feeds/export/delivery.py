"""Delivering changed items for one run: batches to the destination, answers to item records."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from feeds.clock import utcnow
from feeds.definitions import ItemStatus, RetryPolicy
from feeds.export.destination import CallGate, Destination
from feeds.export.protocol import BatchOutcome, ItemResult, budget_exhausted
from feeds.export.retry import next_attempt
from feeds.pipeline.diff import FeedItem
from feeds.state.feed_items import ItemRecord


@dataclass
class Delivery:
    """Sends one run's items in `batch_size` batches (`threads` at a time) and remembers a config error.

    After a 401/403 nothing more is sent to the destination in this run: the remaining items are
    recorded as retryable without a request. Once the API-call budget (`gate`) is used up, nothing
    more is sent either: those items get status -1 and wait, attempts unchanged, until the budget
    frees (the resend job sends them then).
    """

    destination: Destination
    feed: str
    batch_size: int
    retry: RetryPolicy
    keep_payload: bool = False
    threads: int = 1
    config_error: str | None = None
    calls: int = 0
    daily_limit: int | None = None
    gate: CallGate | None = None
    paused: str | None = None  # why the budget stopped sending in this run
    resume_at: datetime | None = None  # when the budget frees again
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def deliver(
        self, items: Sequence[FeedItem], attempts_before: Mapping[str, int] | None = None
    ) -> tuple[list[ItemRecord], list[ItemResult]]:
        """Send `items`; return the feed-table record and the destination's result for each."""
        if not items:
            return [], []
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        if self.threads > 1 and len(batches) > 1:
            with ThreadPoolExecutor(min(self.threads, len(batches))) as pool:
                outcomes = list(pool.map(self._send, batches))
        else:
            outcomes = [self._send(batch) for batch in batches]
        results = {r.id: r for outcome in outcomes for r in outcome.results}
        now = utcnow()
        # A rate-limited item is resent no earlier than the destination allows, whatever the backoff.
        not_before = {
            r.id: now + timedelta(seconds=outcome.retry_after_s)
            for outcome in outcomes
            if outcome.retry_after_s is not None
            for r in outcome.results
        }
        previous = attempts_before or {}
        records = []
        for item in items:
            result = results[item.id]
            retry_at: datetime | None
            if result.status is ItemStatus.SKIPPED:
                # Not a failure: nothing was sent. It waits for the budget, not for a backoff.
                attempts = previous.get(item.id, 0)
                retry_at = self.resume_at or now + timedelta(minutes=1)
            else:
                attempts = 0 if result.status is ItemStatus.SENT else previous.get(item.id, 0) + 1
                retry_at = (
                    next_attempt(attempts, now, self.retry)
                    if result.status is ItemStatus.RETRYABLE
                    else None
                )
                if retry_at is not None and item.id in not_before:
                    retry_at = max(retry_at, not_before[item.id])
            category = result.category
            records.append(
                ItemRecord(
                    item.id,
                    item.entity,
                    item.hash,
                    item.deleted,
                    item.modified_at,
                    result.status,
                    payload=item.body if self.keep_payload else None,
                    error_code=result.code,
                    error_category=None if category is None else category.value,
                    error_message=result.message,
                    attempts=attempts,
                    next_attempt_at=retry_at,
                )
            )
        return records, [results[item.id] for item in items]

    def _send(self, batch: Sequence[FeedItem]) -> BatchOutcome:
        if self.config_error:
            message = f"not sent: {self.config_error}"
            return BatchOutcome(
                [ItemResult(i.id, ItemStatus.RETRYABLE, "CONFIG_ERROR", message) for i in batch],
                calls=0,
            )
        if self.paused:
            return budget_exhausted([i.id for i in batch], self.paused)
        if self.gate is None:
            outcome = self.destination.send(self.feed, batch)
        else:
            outcome = self.destination.send(self.feed, batch, gate=self.gate)
            if outcome.daily_limit is not None:
                self.gate.observe_limit(outcome.daily_limit)
        with self._lock:
            self.calls += outcome.calls
            if outcome.daily_limit is not None:
                self.daily_limit = outcome.daily_limit
            if outcome.config_error and not self.config_error:
                self.config_error = outcome.config_error
            first_pause = outcome.paused is not None and self.paused is None
            if first_pause:
                self.paused = outcome.paused
        if first_pause and self.gate is not None:
            self.resume_at = self.gate.resumes_at()
        return outcome
