"""When to resend a retryable failure: exponential backoff with jitter, and a cap on attempts."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from feeds.definitions import RetryPolicy


def next_attempt(
    attempts: int, now: datetime, policy: RetryPolicy, rng: random.Random | None = None
) -> datetime | None:
    """The time of the next resend after `attempts` failed sends, or None once `max_attempts` is reached.

    The delay doubles each attempt from `backoff_base_s` up to `backoff_max_s`; "full jitter" between
    half and all of it spreads the resends of a batch that failed together.
    """
    if attempts >= policy.max_attempts:
        return None
    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** max(0, attempts - 1))
    factor = (rng or random).uniform(0.5, 1.0)
    return now + timedelta(seconds=delay * factor)
