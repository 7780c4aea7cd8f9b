"""The dashboard's browser session: a cookie `<key id>.<expiry>.<signature>`, never the API key
itself, signed with itsdangerous (HMAC-SHA256).

The signature is salted with the key's stored digest, so revoking or replacing the key ends its
sessions; each request checks the key is still active. The form token (CSRF) is derived from the
session, so a page of another site can forge neither. Used by the dashboard only: the API takes
Bearer keys.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import weakref
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Request, Response
from itsdangerous import Signer, base64_decode
from sqlalchemy import Engine, select

from feeds.context import Context
from worker.api import apikeys
from worker.api.apikeys import ApiKey, ApiKeyRow, Permission, api_keys

SESSION_COOKIE = "feedsync_session"
SESSION_TTL_S = 12 * 3600
SECRET_NAME = "dashboard_session"

# The secret never changes once stored: read it once per engine, not on every request.
_secrets: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Session:
    """A logged-in browser: the key it logged in with, and the token its forms must carry."""

    key: ApiKey
    token: str
    csrf: str


def sign(secret: bytes, key_id: int, key_hash: str, expires: int) -> str:
    return _session_signer(secret, key_hash).sign(f"{key_id}.{expires}").decode()


def parse(token: str) -> tuple[int, int] | None:
    """(key id, expiry) of a well-formed token; its MAC is checked against the key by `valid`."""
    parts = token.split(".")
    if len(token) > 200 or len(parts) != 3 or not all(_digits(p) for p in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def _digits(text: str) -> bool:
    # str.isdigit() alone admits '²', which int() refuses.
    return text.isascii() and text.isdigit()


def valid(secret: bytes, token: str, key_hash: str, now: float) -> bool:
    parsed = parse(token)
    if parsed is None or parsed[1] < now:
        return False
    return _session_signer(secret, key_hash).validate(token)


def csrf_token(secret: bytes, token: str) -> str:
    signer = Signer(secret, salt="feedsync.dashboard.csrf", **_HMAC_SHA256)
    return base64_decode(signer.get_signature(token)).hex()[:32]


def csrf_ok(session: Session, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent, session.csrf)


def current_session(request: Request, ctx: Context) -> Session | None:
    """The session of this request's cookie, when its MAC is right, it is unexpired and its key active."""
    token = request.cookies.get(SESSION_COOKIE, "")
    parsed = parse(token)
    if parsed is None or parsed[1] < time.time():
        return None
    found = _active_key(ctx, parsed[0])
    if found is None:
        return None
    key, key_hash = found
    secret = _secret(ctx)
    if not valid(secret, token, key_hash, time.time()):
        return None
    return Session(key, token, csrf_token(secret, token))


def start(request: Request, response: Response, ctx: Context, key: ApiKey) -> None:
    """Set the session cookie of `key` on the response: HttpOnly, SameSite=Strict, Secure on https."""
    found = _active_key(ctx, key.id)
    if found is None:
        raise LookupError(f"API key {key.id} is not active")
    expires = int(time.time()) + SESSION_TTL_S
    response.set_cookie(
        SESSION_COOKIE,
        sign(_secret(ctx), key.id, found[1], expires),
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def _active_key(ctx: Context, key_id: int) -> tuple[ApiKey, str] | None:
    """The active (not revoked) key with this id, and its stored digest."""
    with ctx.db.connect() as conn:
        row = conn.execute(
            select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    r = cast(ApiKeyRow, row)
    permissions = frozenset(
        Permission(p) for p in r.permissions.split() if p in Permission._value2member_map_
    )
    key = ApiKey(r.id, r.name, r.key_prefix, permissions, r.created_at, r.last_used_at)
    return key, r.key_hash


def _secret(ctx: Context) -> bytes:
    if ctx.db not in _secrets:
        _secrets[ctx.db] = apikeys.shared_secret(ctx.db, SECRET_NAME)
    return _secrets[ctx.db]


_HMAC_SHA256: dict[str, Any] = {"digest_method": hashlib.sha256, "key_derivation": "hmac"}


def _session_signer(secret: bytes, key_hash: str) -> Signer:
    # Salted with the key's digest: a session of a revoked or replaced key no longer verifies.
    return Signer(secret, salt=f"feedsync.dashboard.session:{key_hash}", **_HMAC_SHA256)
