"""The test destination: a threaded HTTP server speaking protocol v1, recording what it accepts
(its holdings) and answering as its faults say."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from worker.testing.destination_server.faults import Faults, FaultSwitches
from worker.testing.destination_server.http_server import DestinationHTTPServer
from worker.testing.destination_server.protocol import (
    ACCEPTED_AT_PATH,
    HEAL_PATH,
    HOLDINGS_PATH,
    MALFORMED_BODY,
    RESET,
    STATS_PATH,
    Answer,
    BadRequest,
    Request,
    error_answer,
    feed_of,
    parse_items,
)

# With keep_items=False every accepted item maps to one of these two shared, read-only envelopes,
# so a million deliveries cost a dict entry each and no copy of the body.
_LIVE: Mapping[str, Any] = MappingProxyType({"deleted": False})
_DELETED: Mapping[str, Any] = MappingProxyType({"deleted": True})


class DestinationServer(FaultSwitches):
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
        self._faults = Faults()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: DestinationHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DestinationServer:
        """Bind and serve in a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the destination server is already running")
        self._stopping.clear()
        self._httpd = DestinationHTTPServer((self.host, self._port), self)
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

    # -- the protocol ------------------------------------------------------------------------

    def _answer(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        """Decide the answer to one request and record it; called from handler threads."""
        arrived = time.monotonic()
        path, _, query = path.partition("?")
        if method == "GET" and path == STATS_PATH:
            return self._with_limit(Answer(200, orjson.dumps(self.stats())))
        if method == "GET" and path == HOLDINGS_PATH:
            feed = query.removeprefix("feed=")
            held = {i: list(pair) for i, pair in self.holdings(feed).items()}
            payload = {"items": held, "duplicates": self.duplicates(feed)}
            return self._with_limit(Answer(200, orjson.dumps(payload)))
        if method == "POST" and path == HEAL_PATH:
            self.clear_faults()
            return self._with_limit(Answer(200, orjson.dumps({"message": "faults cleared"})))
        if method == "GET" and path == ACCEPTED_AT_PATH:
            feed = query.removeprefix("feed=")
            with self._lock:
                times = {i: list(t) for i, t in self.accepted_at.get(feed, {}).items()}
            return Answer(200, orjson.dumps(times))
        feed = feed_of(path)
        if not feed:
            return self._finish(
                error_answer(404, f"no such path: {path}"), path, "", (), headers, arrived
            )
        if method != "POST":
            answer = error_answer(405, f"{method} is not allowed here; use POST")
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
    ) -> Answer:
        items: list[dict[str, Any]] = []
        size = 0
        try:
            items, size = parse_items(raw, headers.get("Content-Encoding"))
            problem = None
        except BadRequest as exc:
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
                answer = error_answer(status, message)
                answer.headers.update(extra)
            elif self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
                answer = error_answer(401, "missing or wrong bearer token")
            elif problem is not None:
                answer = error_answer(problem.status, str(problem))
            elif self._faults.broken:
                broken = self._faults.broken.pop(0)
                if broken.apply:
                    self._apply(feed, items)
                answer = broken.answer or Answer(RESET, b"", reset=True)
            elif self._faults.malformed():
                answer = Answer(200, MALFORMED_BODY)
                self._injected["malformed"] += 1
            elif key is not None and key in self._answers:
                answer, replayed = Answer(200, self._answers[key]), True
            elif self._faults.max_items is not None and len(items) > self._faults.max_items:
                answer = error_answer(
                    413, f"{len(items)} items; at most {self._faults.max_items} per request"
                )
            elif self._faults.max_bytes is not None and size > self._faults.max_bytes:
                answer = error_answer(
                    413, f"{size} bytes; at most {self._faults.max_bytes} per request"
                )
            else:
                body = orjson.dumps({"results": self._apply(feed, items)})
                if key is not None:
                    self._answers[key] = body
                answer = Answer(200, body)
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
                error = rejection.error()
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
        answer: Answer,
        path: str,
        feed: str,
        ids: tuple[str, ...],
        headers: Mapping[str, str],
        arrived: float,
        replayed: bool = False,
        *,
        locked: bool = False,
    ) -> Answer:
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

    def _with_limit(self, answer: Answer) -> Answer:
        if self.daily_limit is not None:
            answer.headers["X-RateLimit-Limit-Day"] = str(self.daily_limit)
        return answer

    def _record_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)
