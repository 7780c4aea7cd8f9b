"""Protocol v1 (SPEC §5) as the test destination reads and answers it: the paths it serves, one
request as recorded, an answer, and the parsing that catches a client breaking the protocol."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson

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
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False
    reset: bool = False  # send nothing: abort the connection (TCP RST)


# The status recorded for a request whose connection was reset instead of answered.
RESET = 0


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def feed_of(path: str) -> str:
    if not path.startswith(FEEDS_PREFIX):
        return ""
    feed = unquote(path[len(FEEDS_PREFIX) :])
    return feed if feed and "/" not in feed else ""


def parse_items(raw: bytes, encoding: str | None) -> tuple[list[dict[str, Any]], int]:
    """The items of a request body, checked enough to catch a client that breaks the protocol, and
    the size of the body decompressed."""
    encoding = (encoding or "identity").lower()
    if encoding == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise BadRequest(400, f"the body is not valid gzip: {exc}") from None
    elif encoding != "identity":
        raise BadRequest(415, f"unsupported Content-Encoding: {encoding}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"the body is not valid JSON: {exc}") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise BadRequest(400, 'the body must be an object with an "items" list')
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(400, f"items[{index}] is not an object")
        for name, kind in REQUIRED_FIELDS.items():
            if not isinstance(item.get(name), kind):
                raise BadRequest(400, f'items[{index}] lacks a valid "{name}"')
        if "data" not in item:
            raise BadRequest(400, f'items[{index}] lacks "data"')
    return items, len(raw)


def error_answer(status: int, message: str) -> Answer:
    return Answer(status, orjson.dumps({"message": message}), {})
