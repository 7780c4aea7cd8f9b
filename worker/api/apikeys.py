"""API keys (SPEC §7): stored as a SHA-256 digest only, each with permissions; and the secrets
every API process shares (e.g. the cursor-signing key), kept in the worker database.

The raw key is shown once, when created. It carries 256 random bits, so a plain SHA-256 digest is
enough to store it: a slow password hash protects guessable secrets, not random ones.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import cast

from sqlalchemy import BigInteger, DateTime, Engine, Integer, String, Table, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from feeds.clock import utcnow
from feeds.errors import FeedsyncError
from feeds.state.database import insert_for
from feeds.state.tables import Base

KEY_PREFIX = "fsk_"
# last_used_at is a hint for people, not an audit log: write it at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Permission(StrEnum):
    INTEGRATION_LIST = "cdi.integration_list"
    INTEGRATION_SYNC = "cdi.integration_sync"
    INTEGRATION_JOB_STATUS = "cdi.integration_job_status"
    SYNC_ADMIN = "sync.admin"


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    permissions: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ApiSecretRow(Base):
    __tablename__ = "api_secrets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ApiRateLimitRow(Base):
    """Requests of one key to one scope in one minute (worker/api/ratelimit.py)."""

    __tablename__ = "api_rate_limits"

    key_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


api_keys = cast(Table, ApiKeyRow.__table__)
rate_counters = cast(Table, ApiRateLimitRow.__table__)
api_secrets = cast(Table, ApiSecretRow.__table__)


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret."""

    id: int
    name: str
    prefix: str
    permissions: frozenset[Permission]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions


def new_raw_key() -> str:
    """A fresh key: a recognisable prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def parse_permissions(names: Iterable[str]) -> frozenset[Permission]:
    """Permissions by name; an unknown name is refused with the accepted ones."""
    accepted = [p.value for p in Permission]
    chosen = set()
    for name in names:
        if name not in accepted:
            raise FeedsyncError(
                f"{name!r} is not a permission; accepted permissions: {', '.join(accepted)}."
            )
        chosen.add(Permission(name))
    if not chosen:
        raise FeedsyncError(
            f"An API key needs at least one permission; accepted permissions: {', '.join(accepted)}."
        )
    return frozenset(chosen)


def create_key(engine: Engine, name: str, permissions: Iterable[str]) -> tuple[ApiKey, str]:
    """Store a new key (its digest only); returns the key record and the raw key, shown once."""
    name = name.strip()
    if not name:
        raise FeedsyncError("An API key needs a name (--name), e.g. --name dashboard.")
    if len(name) > 200:
        raise FeedsyncError("An API key name has at most 200 characters.")
    chosen = parse_permissions(permissions)
    raw = new_raw_key()
    now = utcnow()
    with engine.begin() as conn:
        key_id = conn.execute(
            api_keys.insert()
            .values(
                name=name,
                key_hash=digest(raw),
                key_prefix=raw[: len(KEY_PREFIX) + 6],
                permissions=" ".join(sorted(p.value for p in chosen)),
                created_at=now,
            )
            .returning(api_keys.c.id)
        ).scalar_one()
    return ApiKey(int(key_id), name, raw[: len(KEY_PREFIX) + 6], chosen, now), raw


def find_key(engine: Engine, raw_key: str) -> ApiKey | None:
    """The active key with this secret, or None (unknown or revoked); notes when it was used."""
    if not raw_key or len(raw_key) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest(raw_key))).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        with engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(last_used_at=now))
    return _key(row)


def list_keys(engine: Engine, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [_key(row) for row in conn.execute(query)]


def revoke_key(engine: Engine, key_id: int) -> ApiKey:
    """Revoke a key for good; raises FeedsyncError when there is no active key with this id."""
    with engine.begin() as conn:
        revoked = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(*api_keys.c)
        ).first()
    if revoked is None:
        raise FeedsyncError(
            f"There is no active API key with id {key_id}; apikey:list shows the active keys."
        )
    return _key(revoked)


def shared_secret(engine: Engine, name: str) -> bytes:
    """A random secret stored once in the worker database, the same for every process using it."""
    with engine.begin() as conn:
        insert = insert_for(conn.dialect.name, api_secrets)
        conn.execute(
            insert.values(
                name=name, value=secrets.token_hex(32), created_at=utcnow()
            ).on_conflict_do_nothing(index_elements=["name"])
        )
        value = conn.execute(
            select(api_secrets.c.value).where(api_secrets.c.name == name)
        ).scalar_one()
    return bytes.fromhex(value)


def _key(row: object) -> ApiKey:
    r = cast(ApiKeyRow, row)
    return ApiKey(
        id=int(r.id),
        name=r.name,
        prefix=r.key_prefix,
        permissions=frozenset(
            Permission(p) for p in r.permissions.split() if p in Permission._value2member_map_
        ),
        created_at=r.created_at,
        last_used_at=r.last_used_at,
        revoked_at=r.revoked_at,
    )
