"""A real destination for tests and benchmarks: protocol v1 (SPEC §5) over HTTP, with switchable faults.

In-process: `with DestinationServer() as dest: httpx.post(f"{dest.url}/feeds/products", ...)`.
As a process: `python -m worker.testing.destination_server --port 0 --print-port` prints `PORT <n>` once
listening and serves until SIGTERM/SIGINT; `GET /_stats` then reports what it received, and
`POST /_heal` clears the faults its command line set.
Standard library and orjson only, so it is fast and has no moving parts.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import math
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, MappingProxyType
from typing import Any
from urllib.parse import unquote

import orjson

ItemPredicate = Callable[[Mapping[str, Any]], bool]

FEEDS_PREFIX = "/feeds/"
STATS_PATH = "/_stats"
# ?feed=F: {item id: [wall-clock times accepted]} (--record-times)
ACCEPTED_AT_PATH = "/_accepted_at"
# ?feed=F: {"items": {item id: [hash, deleted]}, "duplicates": n} (envelopes kept: --keep-items)
HOLDINGS_PATH = "/_holdings"
# POST: every fault is cleared, as when a failing destination heals (a process has no other handle)
HEAL_PATH = "/_heal"
# A 200 answer cut short, as a proxy that drops the connection mid-body leaves it; items not applied.
MALFORMED_BODY = b'{"results": [{"id": '
PROTOCOL_HEADERS = ("Content-Encoding", "Authorization", "Idempotency-Key")
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "deleted": bool,
    "modifiedAt": str,
    "hash": str,
}

# With keep_items=False every accepted item maps to one of these two shared, read-only envelopes,
# so a million deliveries cost a dict entry each and no copy of the body.
_LIVE: Mapping[str, Any] = MappingProxyType({"deleted": False})
_DELETED: Mapping[str, Any] = MappingProxyType({"deleted": True})


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the destination saw it; `time` is `time.monotonic()` on arrival; `status` is
    RESET (0) when the connection was reset instead of answered."""

    path: str
    feed: str  # "" when the path is not /feeds/{feed}
    ids: tuple[str, ...]
    idempotency_key: str | None
    gzip: bool
    authorization: str | None
    status: int
    time: float
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _Rejection:
    ids: frozenset[str] | None
    predicate: ItemPredicate | None
    code: str
    message: str

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.predicate is not None:
            return bool(self.predicate(item))
        return self.ids is not None and item["id"] in self.ids


@dataclass
class _Faults:
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
    rejections: list[_Rejection] = field(default_factory=list)
    reject_ratio: float = 0.0
    reject_ratio_code: str = "VALIDATION_RULE"
    reject_seed: int = 0
    omitted: set[str] = field(default_factory=set)
    max_bytes: int | None = None
    # Answers that break the protocol after the request was read: see `garble_next`, `reset_next`.
    broken: list[_Broken] = field(default_factory=list)

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

    def rejection_for(self, item: Mapping[str, Any]) -> _Rejection | None:
        for rejection in self.rejections:
            if rejection.matches(item):
                return rejection
        if self.reject_ratio > 0 and _draw(self.reject_seed, item) < self.reject_ratio:
            code = self.reject_ratio_code
            return _Rejection(None, None, code, f"rejected by reject_ratio ({code})")
        return None


@dataclass(frozen=True, slots=True)
class _Broken:
    """One broken answer to come: `answer` (None: reset the connection instead of answering);
    `apply`: the items are applied first, so the destination holds what the client never heard of."""

    answer: _Answer | None
    apply: bool


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False
    reset: bool = False  # send nothing: abort the connection (TCP RST)


# The status recorded for a request whose connection was reset instead of answered.
RESET = 0


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DestinationServer:
    """A threaded HTTP server speaking destination protocol v1, recording what it accepts.

    State (`accepted`, `requests`) and faults are guarded by one lock; read them once the
    requests under test have been answered, or through the helpers, which copy under the lock.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        daily_limit: int | None = None,
        keep_items: bool = True,
        verbose: bool = False,
        record_times: bool = False,
    ) -> None:
        self.host = host
        self.record_times = record_times
        # Per feed and item id, when it was accepted (time.time(): comparable across processes).
        self.accepted_at: dict[str, dict[str, list[float]]] = {}
        self.token = token
        self.daily_limit = daily_limit
        self.keep_items = keep_items
        self.verbose = verbose
        self.accepted: dict[str, dict[str, Mapping[str, Any]]] = {}
        self.requests: list[Request] = []
        self.errors: list[str] = []  # unexpected exceptions in handlers (a bug here, not a fault)
        self._port = port
        self._deliveries: Counter[str] = Counter()
        # (feed, item id, hash) → accepted deliveries of that version (envelopes kept only).
        self._versions: Counter[tuple[str, str, str]] = Counter()
        self._answers: dict[str, bytes] = {}  # Idempotency-Key → body of its 200 answer
        self._in_flight = 0  # feed requests arrived and not yet answered (slow ones included)
        # Slow answers and the items they carried, malformed answers, rejected items.
        self._injected: Counter[str] = Counter()
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DestinationServer:
        """Bind and serve in a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the destination server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"destination-server-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop open keep-alive connections, wake slow answers, join the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        thread.join()
        httpd.close_connections()
        httpd.server_close()
        self._httpd = self._thread = None

    def __enter__(self) -> DestinationServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the destination server is not running")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:54321`; feeds are at `{url}/feeds/{feed}`."""
        return f"http://{self.host}:{self.port}"

    # -- state -------------------------------------------------------------------------------

    def accepted_ids(self, feed: str) -> set[str]:
        """Ids of the items of `feed` accepted at least once (deleted ones included)."""
        with self._lock:
            return set(self.accepted.get(feed, ()))

    def count(self, feed: str) -> int:
        """Accepted item deliveries to `feed`, repeats included (replays excluded)."""
        with self._lock:
            return self._deliveries[feed]

    def holdings(self, feed: str) -> dict[str, tuple[str, bool]]:
        """What the destination holds of `feed` now: per item id, the hash and deleted flag of the
        last version it accepted (envelopes kept only: `keep_items`)."""
        if not self.keep_items:
            raise RuntimeError("holdings need the accepted envelopes: keep_items=True")
        with self._lock:
            return {
                item_id: (str(item["hash"]), bool(item["deleted"]))
                for item_id, item in self.accepted.get(feed, {}).items()
            }

    def duplicates(self, feed: str | None = None) -> int:
        """Deliveries of a version (item id and hash) the destination had already accepted."""
        with self._lock:
            return sum(
                n - 1 for (f, _, _), n in self._versions.items() if feed is None or f == feed
            )

    def reset(self) -> None:
        """Forget accepted items, recorded requests and idempotency answers; faults stay."""
        with self._lock:
            self.accepted.clear()
            self.requests.clear()
            self.errors.clear()
            self._deliveries.clear()
            self._versions.clear()
            self._injected.clear()
            self._answers.clear()

    def stats(self) -> dict[str, Any]:
        """Counts for a caller outside the process (`GET /_stats`)."""
        with self._lock:
            return {
                "requests": len(self.requests),
                "statuses": dict(Counter(str(r.status) for r in self.requests)),
                "deliveries": dict(self._deliveries),
                "accepted": {feed: len(items) for feed, items in self.accepted.items()},
                "in_flight": self._in_flight,
                "injected": dict(self._injected),
            }

    # -- faults ------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next `n` feed requests answer `status` with `{"message": ...}`, applying nothing."""
        with self._lock:
            self._faults.fail_left, self._faults.fail_status = n, status

    def fail_ratio(self, p: float, status: int = 503, seed: int = 0) -> None:
        """Each feed request fails with `status` with probability `p` (deterministic for a seed)."""
        _check_probability(p)
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
        _check_probability(p)
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
        broken = _Broken(_Answer(200, body, dict(headers or {})), apply)
        with self._lock:
            self._faults.broken.extend([broken] * n)

    def reset_next(self, n: int, *, apply: bool = False) -> None:
        """The next `n` feed requests get no answer: the connection is reset once the request was
        read (after applying the items when `apply`)."""
        with self._lock:
            self._faults.broken.extend([_Broken(None, apply)] * n)

    def slow_next(self, n: int, seconds: float) -> None:
        """The next `n` feed requests wait `seconds` before being handled; others are served meanwhile."""
        with self._lock:
            self._faults.slow_left, self._faults.slow_seconds = n, seconds

    def slow_ratio(self, p: float, seconds: float, seed: int = 0) -> None:
        """Each feed request waits `seconds` with probability `p` before being handled (and applied,
        as a destination that did the work but answered too late)."""
        _check_probability(p)
        with self._lock:
            self._faults.slow_ratio, self._faults.slow_ratio_seconds = p, seconds
            self._faults.slow_rng = random.Random(f"slow:{seed}")

    def malformed_ratio(self, p: float, seed: int = 0) -> None:
        """Each feed request answers, with probability `p`, a 200 whose body is cut short
        (MALFORMED_BODY), without applying its items."""
        _check_probability(p)
        with self._lock:
            self._faults.malformed_ratio = p
            self._faults.malformed_rng = random.Random(f"malformed:{seed}")

    def reject(
        self,
        ids_or_predicate: Iterable[str] | ItemPredicate,
        code: str = "VALIDATION_RULE",
        message: str | None = None,
    ) -> None:
        """Answer `rejected` with `code` for these ids, or for envelopes the predicate is true of.

        Rules add up; the first one that matches an item gives its code.
        """
        text = message or f"rejected by the test destination ({code})"
        if callable(ids_or_predicate):
            rule = _Rejection(None, ids_or_predicate, code, text)
        else:
            ids = [ids_or_predicate] if isinstance(ids_or_predicate, str) else ids_or_predicate
            rule = _Rejection(frozenset(ids), None, code, text)
        with self._lock:
            self._faults.rejections.append(rule)

    def reject_ratio(self, p: float, code: str = "VALIDATION_RULE", seed: int = 0) -> None:
        """Reject each item version with probability `p`, deterministic for a seed. The draw is
        of the item's id and hash, as a validation rule reads the content: a version is rejected
        every time it comes or never, and a resend is not another roll of the dice."""
        _check_probability(p)
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
            self._faults = _Faults()

    # -- the protocol ------------------------------------------------------------------------

    def _answer(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> _Answer:
        """Decide the answer to one request and record it; called from handler threads."""
        arrived = time.monotonic()
        path, _, query = path.partition("?")
        if method == "GET" and path == STATS_PATH:
            return self._with_limit(_Answer(200, orjson.dumps(self.stats())))
        if method == "GET" and path == HOLDINGS_PATH:
            feed = query.removeprefix("feed=")
            held = {i: list(pair) for i, pair in self.holdings(feed).items()}
            payload = {"items": held, "duplicates": self.duplicates(feed)}
            return self._with_limit(_Answer(200, orjson.dumps(payload)))
        if method == "POST" and path == HEAL_PATH:
            self.clear_faults()
            return self._with_limit(_Answer(200, orjson.dumps({"message": "faults cleared"})))
        if method == "GET" and path == ACCEPTED_AT_PATH:
            feed = query.removeprefix("feed=")
            with self._lock:
                times = {i: list(t) for i, t in self.accepted_at.get(feed, {}).items()}
            return _Answer(200, orjson.dumps(times))
        feed = _feed_of(path)
        if not feed:
            return self._finish(
                _error(404, f"no such path: {path}"), path, "", (), headers, arrived
            )
        if method != "POST":
            answer = _error(405, f"{method} is not allowed here; use POST")
            answer.headers["Allow"] = "POST"
            return self._finish(answer, path, feed, (), headers, arrived)

        with self._lock:
            delay = self._faults.slow_delay()
            self._in_flight += 1
            if delay:
                self._injected["slow"] += 1
        try:
            if delay:
                self._stopping.wait(delay)  # stop() cuts a slow answer short
            return self._handle(path, feed, headers, raw, arrived, late=bool(delay))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _handle(
        self,
        path: str,
        feed: str,
        headers: Mapping[str, str],
        raw: bytes,
        arrived: float,
        *,
        late: bool,
    ) -> _Answer:
        items: list[dict[str, Any]] = []
        size = 0
        try:
            items, size = _parse(raw, headers.get("Content-Encoding"))
            problem = None
        except _BadRequest as exc:
            problem = exc
        ids = tuple(item["id"] for item in items)
        key = headers.get("Idempotency-Key")

        replayed = False
        with self._lock:
            if late:
                self._injected["late_items"] += len(ids)
            failure = self._faults.request_failure()
            if failure is not None:
                status, message, extra = failure
                answer = _error(status, message)
                answer.headers.update(extra)
            elif self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
                answer = _error(401, "missing or wrong bearer token")
            elif problem is not None:
                answer = _error(problem.status, str(problem))
            elif self._faults.broken:
                broken = self._faults.broken.pop(0)
                if broken.apply:
                    self._apply(feed, items)
                answer = broken.answer or _Answer(RESET, b"", reset=True)
            elif self._faults.malformed():
                answer = _Answer(200, MALFORMED_BODY)
                self._injected["malformed"] += 1
            elif key is not None and key in self._answers:
                answer, replayed = _Answer(200, self._answers[key]), True
            elif self._faults.max_items is not None and len(items) > self._faults.max_items:
                answer = _error(
                    413, f"{len(items)} items; at most {self._faults.max_items} per request"
                )
            elif self._faults.max_bytes is not None and size > self._faults.max_bytes:
                answer = _error(413, f"{size} bytes; at most {self._faults.max_bytes} per request")
            else:
                body = orjson.dumps({"results": self._apply(feed, items)})
                if key is not None:
                    self._answers[key] = body
                answer = _Answer(200, body)
            return self._finish(answer, path, feed, ids, headers, arrived, replayed, locked=True)

    def _apply(self, feed: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Accept or reject each item (the lock is held); the `results` of the answer."""
        faults = self._faults
        store = self.accepted.setdefault(feed, {})
        results: list[dict[str, Any]] = []
        accepted = 0
        for item in items:
            item_id = item["id"]
            if item_id in faults.omitted:
                continue
            rejection = faults.rejection_for(item)
            if rejection is not None:
                error = {"code": rejection.code, "message": rejection.message}
                self._injected["rejected"] += 1
                results.append({"id": item_id, "status": "rejected", "error": error})
                continue
            if self.keep_items:
                store[item_id] = item
                self._versions[(feed, item_id, str(item["hash"]))] += 1
            else:
                store[item_id] = _DELETED if item["deleted"] else _LIVE
            accepted += 1
            if self.record_times:
                self.accepted_at.setdefault(feed, {}).setdefault(item_id, []).append(time.time())
            results.append({"id": item_id, "status": "accepted"})
        self._deliveries[feed] += accepted
        return results

    def _finish(
        self,
        answer: _Answer,
        path: str,
        feed: str,
        ids: tuple[str, ...],
        headers: Mapping[str, str],
        arrived: float,
        replayed: bool = False,
        *,
        locked: bool = False,
    ) -> _Answer:
        request = Request(
            path=path,
            feed=feed,
            ids=ids,
            idempotency_key=headers.get("Idempotency-Key"),
            gzip=(headers.get("Content-Encoding") or "").lower() == "gzip",
            authorization=headers.get("Authorization"),
            status=answer.status,
            time=arrived,
            replayed=replayed,
        )
        if locked:
            self.requests.append(request)
        else:
            with self._lock:
                self.requests.append(request)
        return self._with_limit(answer)

    def _with_limit(self, answer: _Answer) -> _Answer:
        if self.daily_limit is not None:
            answer.headers["X-RateLimit-Limit-Day"] = str(self.daily_limit)
        return answer

    def _record_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)


def _feed_of(path: str) -> str:
    if not path.startswith(FEEDS_PREFIX):
        return ""
    feed = unquote(path[len(FEEDS_PREFIX) :])
    return feed if feed and "/" not in feed else ""


def _parse(raw: bytes, encoding: str | None) -> tuple[list[dict[str, Any]], int]:
    """The items of a request body, checked enough to catch a client that breaks the protocol, and
    the size of the body decompressed."""
    encoding = (encoding or "identity").lower()
    if encoding == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _BadRequest(400, f"the body is not valid gzip: {exc}") from None
    elif encoding != "identity":
        raise _BadRequest(415, f"unsupported Content-Encoding: {encoding}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _BadRequest(400, f"the body is not valid JSON: {exc}") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise _BadRequest(400, 'the body must be an object with an "items" list')
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _BadRequest(400, f"items[{index}] is not an object")
        for name, kind in REQUIRED_FIELDS.items():
            if not isinstance(item.get(name), kind):
                raise _BadRequest(400, f'items[{index}] lacks a valid "{name}"')
        if "data" not in item:
            raise _BadRequest(400, f'items[{index}] lacks "data"')
    return items, len(raw)


def _error(status: int, message: str) -> _Answer:
    return _Answer(status, orjson.dumps({"message": message}), {})


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


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be between 0 and 1, not {p}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "FeedsyncTestDestination/1"
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: headers and body leave in one write, flushed after each request
    server: _HTTPServer

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = (
                True  # the client went away (e.g. it timed out): nothing to answer
            )

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _serve(self) -> None:
        destination = self.server.destination
        try:
            raw = self._read_body()
            headers = {
                name: value for name in PROTOCOL_HEADERS if (value := self.headers.get(name))
            }
            answer = destination._answer(self.command, self.path, headers, raw)
        except _BadRequest as exc:
            answer = _Answer(exc.status, orjson.dumps({"message": str(exc)}), {}, close=True)
        except Exception as exc:  # a bug in this server: answer 500 and keep the trace for the test
            destination._record_error(f"{type(exc).__name__}: {exc}")
            answer = _Answer(500, orjson.dumps({"message": f"test destination bug: {exc!r}"}))
        if answer.reset:
            self._reset()
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)

    def _reset(self) -> None:
        """Abort the connection: linger 0 makes close() send a TCP RST instead of a clean FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise _BadRequest(400, f"bad Content-Length: {length!r}")
            return self.rfile.read(int(length))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";", 1)[0] or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return b""  # HTTP/1.1: neither header means no body

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.destination.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], destination: DestinationServer) -> None:
        self.destination = destination
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their threads finish and server_close can join them."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        self.destination._record_error(f"{type(exc).__name__}: {exc}")
        super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = _arguments().parse_args(argv)
    destination = DestinationServer(
        host=args.host,
        port=args.port,
        token=args.token,
        daily_limit=args.daily_limit,
        keep_items=args.keep_items,
        verbose=args.verbose,
        record_times=args.record_times,
    )
    if args.fail_ratio:
        destination.fail_ratio(args.fail_ratio, status=args.fail_status, seed=args.seed)
    if args.reject_ratio:
        destination.reject_ratio(args.reject_ratio, code=args.reject_code, seed=args.seed)
    if args.max_items is not None:
        destination.too_large_over(args.max_items)
    if args.rate_limit_ratio:
        forms = {"seconds": (False,), "date": (True,), "both": (False, True)}[args.retry_after_form]
        destination.rate_limit_ratio(
            args.rate_limit_ratio, args.retry_after, forms=forms, seed=args.seed
        )
    if args.slow_ratio:
        destination.slow_ratio(args.slow_ratio, args.slow_seconds, seed=args.seed)
    if args.malformed_ratio:
        destination.malformed_ratio(args.malformed_ratio, seed=args.seed)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    destination.start()
    if args.print_port:
        print(f"PORT {destination.port}", flush=True)
    if not args.quiet:
        print(
            f"destination protocol v1 listening on {destination.url}", file=sys.stderr, flush=True
        )
    stop.wait()
    destination.stop()
    if not args.quiet:
        stats = destination.stats()
        deliveries = sum(stats["deliveries"].values())
        print(f"served {stats['requests']} requests, {deliveries} item deliveries", file=sys.stderr)
    return 0


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.testing.destination_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--print-port", action="store_true", help="print PORT <n> once listening")
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN")
    parser.add_argument("--daily-limit", type=int, help="send X-RateLimit-Limit-Day: N")
    parser.add_argument("--fail-ratio", type=float, default=0.0, help="fail this share of requests")
    parser.add_argument(
        "--fail-status", type=int, default=503, help="status of --fail-ratio failures"
    )
    parser.add_argument(
        "--reject-ratio", type=float, default=0.0, help="reject this share of items"
    )
    parser.add_argument("--reject-code", default="VALIDATION_RULE", help="code of --reject-ratio")
    parser.add_argument("--max-items", type=int, help="answer 413 to requests with more items")
    parser.add_argument(
        "--rate-limit-ratio", type=float, default=0.0, help="answer 429 to this share of requests"
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="seconds a --rate-limit-ratio 429 asks for"
    )
    parser.add_argument(
        "--retry-after-form",
        choices=["seconds", "date", "both"],
        default="seconds",
        help="Retry-After as delay-seconds, an HTTP date, or each in turn",
    )
    parser.add_argument(
        "--slow-ratio", type=float, default=0.0, help="answer this share of requests late"
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=31.0,
        help="how late (the items are applied all the same)",
    )
    parser.add_argument(
        "--malformed-ratio",
        type=float,
        default=0.0,
        help="answer this share of requests 200 with a body cut short (items not applied)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the ratio faults")
    parser.add_argument("--keep-items", action="store_true", help="keep accepted envelopes")
    parser.add_argument("--quiet", action="store_true", help="no startup or summary lines")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--record-times",
        action="store_true",
        help=f"record when each item was accepted (GET {ACCEPTED_AT_PATH}?feed=F)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
