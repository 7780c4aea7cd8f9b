"""Settings changed at runtime for the whole fleet (the dashboard, `PUT /sync/usage`): one row per
name in `runtime_settings`, a JSON value; the environment's value is only the default when no row
exists.

Every process reads them through a cache of CACHE_S seconds, so that asking before each API call
costs no query: a change made elsewhere is in force everywhere within CACHE_S, a change made in
this process at once.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from feeds.clock import utcnow
from feeds.state.database import insert_for
from feeds.state.tables import runtime_settings

CACHE_S = 10.0
# The cache's clock; tests move it forward instead of sleeping.
clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class StoredSetting:
    value: Any  # the decoded JSON value
    updated_at: datetime
    updated_by: str | None  # the API key's name that changed it


_cache: weakref.WeakKeyDictionary[Engine, dict[str, tuple[float, StoredSetting | None]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def read(db: Engine, name: str) -> StoredSetting | None:
    """The stored setting, or None when it was never changed (or reset): at most CACHE_S old."""
    now = clock()
    with _lock:
        cached = _cache.get(db, {}).get(name)
    if cached is not None and cached[0] > now:
        return cached[1]
    with db.connect() as conn:
        row = conn.execute(select(runtime_settings).where(runtime_settings.c.name == name)).first()
    found = (
        None
        if row is None
        else StoredSetting(json.loads(row.value), row.updated_at, row.updated_by)
    )
    _remember(db, name, found)
    return found


def write(db: Engine, name: str, value: Any, *, by: str | None) -> StoredSetting:
    """Store a value for every process (in force here at once, elsewhere within CACHE_S)."""
    stored = StoredSetting(value, utcnow(), by)
    values = {"value": json.dumps(value), "updated_at": stored.updated_at, "updated_by": by}
    with db.begin() as conn:
        insert = insert_for(conn.dialect.name, runtime_settings).values(name=name, **values)
        conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=values))
    _remember(db, name, stored)
    return stored


def clear(db: Engine, name: str) -> None:
    """Forget the stored value: the environment's is in force again."""
    with db.begin() as conn:
        conn.execute(runtime_settings.delete().where(runtime_settings.c.name == name))
    _remember(db, name, None)


def _remember(db: Engine, name: str, setting: StoredSetting | None) -> None:
    with _lock:
        _cache.setdefault(db, {})[name] = (clock() + CACHE_S, setting)
