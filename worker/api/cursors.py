"""Opaque page cursors of the `cdi` lists: a position, signed (itsdangerous, HMAC-SHA256) so that
the server can tell its own cursors from forged, altered, foreign or stale ones. Pure functions.

A cursor is `base64url(json payload) "." issued "." signature` (itsdangerous's timestamp signer);
the payload names the list it belongs to (`scope`), the direction, and the sort key of the row it
starts from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from itsdangerous import BadData, SignatureExpired, TimestampSigner, base64_decode, base64_encode

# A client may page through a list for a while; past this a cursor is refused as stale.
CURSOR_TTL_S = 24 * 3600
MAX_CURSOR_LENGTH = 2000
_SALT = "feedsync.cdi.cursor"


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
    payload = orjson.dumps({"s": cursor.scope, "d": cursor.direction.value, "k": list(cursor.key)})
    return _signer(secret, now).sign(base64_encode(payload)).decode("ascii")


def decode(token: str, secret: bytes, scope: str, now: float) -> Cursor:
    """The cursor `token` stands for; CursorError unless this server issued it for `scope` recently."""
    if not token or len(token) > MAX_CURSOR_LENGTH:
        raise CursorError("malformed")
    try:
        data: Any = orjson.loads(base64_decode(_signer(secret, now).unsign(token, CURSOR_TTL_S)))
    except SignatureExpired:
        raise CursorError("stale") from None
    except BadData:
        raise CursorError("bad signature") from None
    if data.get("s") != scope:
        raise CursorError("issued for another list")
    return Cursor(scope, Direction(data["d"]), tuple(str(part) for part in data["k"]))


class _SignerAt(TimestampSigner):
    """A timestamp signer whose clock is an argument, so cursors stay pure functions of `now`."""

    def __init__(self, *args: Any, now: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = int(now)

    def get_timestamp(self) -> int:
        return self._now


def _signer(secret: bytes, now: float) -> _SignerAt:
    return _SignerAt(
        secret, salt=_SALT, digest_method=hashlib.sha256, key_derivation="hmac", now=now
    )
