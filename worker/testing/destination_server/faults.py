"""The faults a test destination can be switched to: failures, rate limits, slow, garbled and
reset answers, rejected and omitted items; each fault is consumed or drawn per request."""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from worker.testing.destination_server.protocol import Answer

ItemPredicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class Rejection:
    ids: frozenset[str] | None
    predicate: ItemPredicate | None
    code: str
    message: str
    field: str | None = None
    value: str | None = None

    def error(self) -> dict[str, str]:
        """The `error` object of a rejected result: code, message, and field/value when set."""
        named = {"field": self.field, "value": self.value}
        return {"code": self.code, "message": self.message} | {
            k: v for k, v in named.items() if v is not None
        }

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.predicate is not None:
            return bool(self.predicate(item))
        return self.ids is not None and item["id"] in self.ids


@dataclass
class Faults:
    fail_left: int = 0
    fail_status: int = 503
    fail_ratio: float = 0.0
    fail_ratio_status: int = 503
    fail_rng: random.Random = field(default_factory=random.Random)
    rate_limited_left: int = 0
    retry_after: float = 1
    rate_limited_until: float = 0.0  # time.monotonic(): every request before it answers 429
    retry_after_as_date: bool = False
    rate_limit_ratio: float = 0.0
    rate_limit_rng: random.Random = field(default_factory=random.Random)
    # Each ratio 429 gives its Retry-After in the next of these forms (True: an HTTP date).
    rate_limit_forms: tuple[bool, ...] = (False,)
    rate_limited: int = 0
    max_items: int | None = None
    slow_left: int = 0
    slow_seconds: float = 0.0
    slow_ratio: float = 0.0
    slow_ratio_seconds: float = 0.0
    slow_rng: random.Random = field(default_factory=random.Random)
    malformed_ratio: float = 0.0
    malformed_rng: random.Random = field(default_factory=random.Random)
    rejections: list[Rejection] = field(default_factory=list)
    reject_ratio: float = 0.0
    reject_ratio_code: str = "VALIDATION_RULE"
    reject_seed: int = 0
    omitted: set[str] = field(default_factory=set)
    max_bytes: int | None = None
    # Answers that break the protocol after the request was read: see `garble_next`, `reset_next`.
    broken: list[Broken] = field(default_factory=list)

    def request_failure(self) -> tuple[int, str, dict[str, str]] | None:
        """The status, message and headers a forced failure answers with, consuming it; None if none."""
        if self.fail_left > 0:
            self.fail_left -= 1
            return self.fail_status, "failure injected by fail_next", {}
        as_date = self.retry_after_as_date
        if self.rate_limited_left > 0:
            self.rate_limited_left -= 1
            return 429, "rate limited", {"Retry-After": _retry_after(self.retry_after, as_date)}
        if (left := self.rate_limited_until - time.monotonic()) > 0:
            return 429, "rate limited", {"Retry-After": _retry_after(left, as_date)}
        if self.fail_ratio > 0 and self.fail_rng.random() < self.fail_ratio:
            return self.fail_ratio_status, "failure injected by fail_ratio", {}
        if self.rate_limit_ratio > 0 and self.rate_limit_rng.random() < self.rate_limit_ratio:
            as_date = self.rate_limit_forms[self.rate_limited % len(self.rate_limit_forms)]
            self.rate_limited += 1
            return 429, "rate limited", {"Retry-After": _retry_after(self.retry_after, as_date)}
        return None

    def slow_delay(self) -> float:
        """Seconds the request waits before it is handled, consuming a slow_next; 0 if none."""
        if self.slow_left > 0:
            self.slow_left -= 1
            return self.slow_seconds
        if self.slow_ratio > 0 and self.slow_rng.random() < self.slow_ratio:
            return self.slow_ratio_seconds
        return 0.0

    def malformed(self) -> bool:
        return self.malformed_ratio > 0 and self.malformed_rng.random() < self.malformed_ratio

    def rejection_for(self, item: Mapping[str, Any]) -> Rejection | None:
        for rejection in self.rejections:
            if rejection.matches(item):
                return rejection
        if self.reject_ratio > 0 and _draw(self.reject_seed, item) < self.reject_ratio:
            code = self.reject_ratio_code
            return Rejection(None, None, code, f"rejected by reject_ratio ({code})")
        return None


@dataclass(frozen=True, slots=True)
class Broken:
    """One broken answer to come: `answer` (None: reset the connection instead of answering);
    `apply`: the items are applied first, so the destination holds what the client never heard of."""

    answer: Answer | None
    apply: bool


class FaultSwitches:
    """The switches of the faults, for the server that holds them (`_faults`, under `_lock`)."""

    _lock: threading.Lock
    _faults: Faults

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next `n` feed requests answer `status` with `{"message": ...}`, applying nothing."""
        with self._lock:
            self._faults.fail_left, self._faults.fail_status = n, status

    def fail_ratio(self, p: float, status: int = 503, seed: int = 0) -> None:
        """Each feed request fails with `status` with probability `p` (deterministic for a seed)."""
        check_probability(p)
        with self._lock:
            self._faults.fail_ratio, self._faults.fail_ratio_status = p, status
            self._faults.fail_rng = random.Random(f"fail:{seed}")

    def rate_limit_next(self, n: int, retry_after: float = 1, *, http_date: bool = False) -> None:
        """The next `n` feed requests answer 429 with `Retry-After: retry_after` (seconds, or with
        `http_date` the HTTP date that far ahead)."""
        with self._lock:
            self._faults.rate_limited_left, self._faults.retry_after = n, retry_after
            self._faults.retry_after_as_date = http_date

    def rate_limit_for(self, seconds: float, *, http_date: bool = False) -> None:
        """Every feed request of the next `seconds` answers 429 with a Retry-After of the time left,
        as a rate limiter's window does (as seconds, or with `http_date` as an HTTP date)."""
        with self._lock:
            self._faults.rate_limited_until = time.monotonic() + seconds
            self._faults.retry_after_as_date = http_date

    def rate_limit_ratio(
        self,
        p: float,
        retry_after: float = 1,
        *,
        forms: tuple[bool, ...] = (False,),
        seed: int = 0,
    ) -> None:
        """Each feed request answers 429 with probability `p`, with `Retry-After: retry_after`
        given in turn in each of `forms` (False: delay-seconds, True: the HTTP date that far ahead)."""
        check_probability(p)
        if not forms:
            raise ValueError("a 429 needs at least one form of Retry-After")
        with self._lock:
            self._faults.rate_limit_ratio, self._faults.retry_after = p, retry_after
            self._faults.rate_limit_forms, self._faults.rate_limited = forms, 0
            self._faults.rate_limit_rng = random.Random(f"rate-limit:{seed}")

    def too_large_over(self, max_items: int | None, *, max_bytes: int | None = None) -> None:
        """A request with more than `max_items` items, or a body of more than `max_bytes` bytes
        (decompressed), answers 413; None lifts a limit."""
        with self._lock:
            self._faults.max_items, self._faults.max_bytes = max_items, max_bytes

    def garble_next(
        self,
        n: int,
        body: bytes = b'{"results": [{"id": ',
        *,
        headers: Mapping[str, str] | None = None,
        apply: bool = False,
    ) -> None:
        """The next `n` feed requests answer 200 with `body` (and `headers`) instead of the results,
        after applying the items when `apply`."""
        broken = Broken(Answer(200, body, dict(headers or {})), apply)
        with self._lock:
            self._faults.broken.extend([broken] * n)

    def reset_next(self, n: int, *, apply: bool = False) -> None:
        """The next `n` feed requests get no answer: the connection is reset once the request was
        read (after applying the items when `apply`)."""
        with self._lock:
            self._faults.broken.extend([Broken(None, apply)] * n)

    def slow_next(self, n: int, seconds: float) -> None:
        """The next `n` feed requests wait `seconds` before being handled; others are served meanwhile."""
        with self._lock:
            self._faults.slow_left, self._faults.slow_seconds = n, seconds

    def slow_ratio(self, p: float, seconds: float, seed: int = 0) -> None:
        """Each feed request waits `seconds` with probability `p` before being handled (and applied,
        as a destination that did the work but answered too late)."""
        check_probability(p)
        with self._lock:
            self._faults.slow_ratio, self._faults.slow_ratio_seconds = p, seconds
            self._faults.slow_rng = random.Random(f"slow:{seed}")

    def malformed_ratio(self, p: float, seed: int = 0) -> None:
        """Each feed request answers, with probability `p`, a 200 whose body is cut short
        (MALFORMED_BODY), without applying its items."""
        check_probability(p)
        with self._lock:
            self._faults.malformed_ratio = p
            self._faults.malformed_rng = random.Random(f"malformed:{seed}")

    def reject(
        self,
        ids_or_predicate: Iterable[str] | ItemPredicate,
        code: str = "VALIDATION_RULE",
        message: str | None = None,
        *,
        field: str | None = None,
        value: str | None = None,
    ) -> None:
        """Answer `rejected` with `code` for these ids, or for envelopes the predicate is true of;
        the error names `field` and `value` when given (as a CRM names the property it refused,
        or the record a missing association points to).

        Rules add up; the first one that matches an item gives its code.
        """
        text = message or f"rejected by the test destination ({code})"
        if callable(ids_or_predicate):
            rule = Rejection(None, ids_or_predicate, code, text, field, value)
        else:
            ids = [ids_or_predicate] if isinstance(ids_or_predicate, str) else ids_or_predicate
            rule = Rejection(frozenset(ids), None, code, text, field, value)
        with self._lock:
            self._faults.rejections.append(rule)

    def reject_ratio(self, p: float, code: str = "VALIDATION_RULE", seed: int = 0) -> None:
        """Reject each item version with probability `p`, deterministic for a seed. The draw is
        of the item's id and hash, as a validation rule reads the content: a version is rejected
        every time it comes or never, and a resend is not another roll of the dice."""
        check_probability(p)
        with self._lock:
            self._faults.reject_ratio, self._faults.reject_ratio_code = p, code
            self._faults.reject_seed = seed

    def omit(self, ids: Iterable[str]) -> None:
        """Leave these items out of `results` (and do not apply them)."""
        ids = [ids] if isinstance(ids, str) else ids
        with self._lock:
            self._faults.omitted.update(ids)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = Faults()


def _retry_after(seconds: float, as_date: bool) -> str:
    """`seconds` as delay-seconds, or as the HTTP date that far ahead (whole seconds, rounded up)."""
    if as_date:
        return formatdate(math.ceil(time.time() + seconds), usegmt=True)
    return _seconds(seconds)


def _seconds(value: float) -> str:
    # HTTP wants whole seconds; a fraction is kept so that tests can ask for short waits.
    return str(int(value)) if float(value).is_integer() else str(value)


def _draw(seed: int, item: Mapping[str, Any]) -> float:
    """A number in [0, 1) that depends only on the seed and the item version (id and hash)."""
    text = f"reject:{seed}\0{item['id']}\0{item['hash']}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2**64


def check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be between 0 and 1, not {p}")
