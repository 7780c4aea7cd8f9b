"""Opaque page cursors of the `cdi` lists: a position, signed with HMAC-SHA256 so that the server
can tell its own cursors from forged, altered, foreign or stale ones. Pure functions.

A cursor is `base64url(json payload) "." base64url(mac)`; the payload names the list it belongs
to (`scope`), the direction, the sort key of the row it starts from, and when it was issued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

import orjson

# A client may page through a list for a while; past this a cursor is refused as stale.
CURSOR_TTL_S = 24 * 3600
MAX_CURSOR_LENGTH = 2000
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class Direction(StrEnum):
    NEXT = "next"  # the rows after `key` (older)
    PREV = "prev"  # the rows before `key` (newer)


class CursorError(ValueError):
    """The cursor was not issued by this server for this list, or is too old."""


@dataclass(frozen=True)
class Cursor:
    scope: str
    direction: Direction
    key: tuple[str, ...]


def encode(cursor: Cursor, secret: bytes, now: float) -> str:
    payload = orjson.dumps(
        {"s": cursor.scope, "d": cursor.direction.value, "k": list(cursor.key), "t": int(now)}
    )
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def decode(token: str, secret: bytes, scope: str, now: float) -> Cursor:
    """The cursor `token` stands for; CursorError unless this server issued it for `scope` recently."""
    if not token or len(token) > MAX_CURSOR_LENGTH or token.count(".") != 1:
        raise CursorError("malformed")
    body, mac = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(mac)
    except (binascii.Error, ValueError):
        raise CursorError("malformed") from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise CursorError("bad signature")
    data = orjson.loads(payload)
    if data.get("s") != scope:
        raise CursorError("issued for another list")
    if not 0 <= now - data["t"] <= CURSOR_TTL_S:
        raise CursorError("stale")
    return Cursor(scope, Direction(data["d"]), tuple(str(part) for part in data["k"]))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
