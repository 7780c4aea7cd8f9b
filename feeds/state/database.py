"""Engines for the worker and source databases, and schema migrations of the worker database."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from feeds.errors import DatabaseUnavailableError, one_line

log = structlog.get_logger("feeds.database")
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def insert_for(dialect: str, table: Table) -> Any:
    """An INSERT for `table` that supports ON CONFLICT upserts on PostgreSQL and on SQLite."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def refresh_statistics(engine: Engine, tables: Sequence[str]) -> None:
    """ANALYZE tables a bulk write has just filled (PostgreSQL). Until autovacuum gets to them, the
    planner plans with the statistics of nearly empty tables: a partial sync of 1,000 items right
    after a full reindex of a million then scans the whole feed table (0.7 s instead of 0.1 s).
    Best effort: a role that may not analyze a table is logged, not failed."""
    if engine.dialect.name != "postgresql" or not tables:
        return
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
    except DBAPIError as exc:
        log.warning("database.analyze_failed", tables=list(tables), error=one_line(exc))


def connect(url: str, setting: str) -> Engine:
    """An engine for `url` that has connected once; DatabaseUnavailableError names `setting` (and
    the host, never the password) when the database cannot be reached or refuses the login."""
    try:
        engine = create_db_engine(url)
    except OSError as exc:  # the folder of an SQLite file cannot be created
        raise DatabaseUnavailableError(_unavailable(setting, make_url(url), exc.strerror)) from None
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        reason = failure_reason(exc, engine.url.password)
        raise DatabaseUnavailableError(_unavailable(setting, engine.url, reason)) from None
    return engine


def failure_reason(exc: DBAPIError, password: str | None = None) -> str:
    """The driver's reason in a few words: `Connection refused`, `role "x" does not exist`."""
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    reason = lines[0].rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip().rstrip(".")
    return reason.replace(password, "***") if password else reason


def _unavailable(setting: str, url: URL, reason: str | None) -> str:
    shown = url.set(query={}).render_as_string(hide_password=True)
    accepted = (
        "a file in a folder this user may write to"
        if url.get_backend_name() == "sqlite"
        else "the URL of a running server, with a user and password it accepts"
    )
    return f"The database of {setting} ({shown}) cannot be used: {reason}; accepted: {accepted}."


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite files get WAL and a busy timeout so workers and the app can share them."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pool_pre_ping: a connection the server dropped (a restart, a failover) is replaced
        # before use, so a process outlives its database's restarts without being restarted.
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
        _log_reconnections(engine)
        return engine
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Worker, beat and the application may write the same file: wait for a lock, don't fail.
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # What PostgreSQL has built in: the hash of the documents the database builds.
        dbapi_connection.create_function("md5", 1, _md5, deterministic=True)
        dbapi_connection.create_function("md5_digest", 1, _md5_digest, deterministic=True)

    return engine


def _md5(text: str | bytes | None) -> str | None:
    if text is None:
        return None
    data = text.encode() if isinstance(text, str) else text
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _md5_digest(text: str | bytes | None) -> bytes | None:
    """md5 as the 16 bytes the feed table stores (what PostgreSQL's decode(md5(x), 'hex') gives)."""
    if text is None:
        return None
    data = text.encode() if isinstance(text, str) else text
    return hashlib.md5(data, usedforsecurity=False).digest()


def _log_reconnections(engine: Engine) -> None:
    """Log when a server that answered stops answering (`database.connection_lost`, once per
    outage) and when a connection works again (`database.reconnected`, with the seconds between)."""
    shown = engine.url.set(query={}).render_as_string(hide_password=True)
    state: dict[str, float | None] = {"connected_at": None, "lost_at": None}

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, _record: Any) -> None:
        lost_at = state["lost_at"]
        if lost_at is not None:
            state["lost_at"] = None
            log.info(
                "database.reconnected", database=shown, down_s=round(time.monotonic() - lost_at, 1)
            )
        state["connected_at"] = time.monotonic()

    @event.listens_for(engine, "handle_error")
    def _failed(context: ExceptionContext) -> None:
        # A server never reached is a start-up error, said in one sentence by `connect`.
        if state["connected_at"] is None or state["lost_at"] is not None:
            return
        if context.is_disconnect or context.connection is None:  # dropped, or refused anew
            state["lost_at"] = time.monotonic()
            log.warning(
                "database.connection_lost",
                database=shown,
                error=one_line(context.original_exception),
                recovery="reconnecting at the next use",
            )


def while_unreachable(action: Callable[[], T], *, until: float, what: str) -> T:
    """`action()`, tried again while the database cannot be reached (OperationalError: a restart,
    a failover) until `until` (time.monotonic()); past it, its last error is raised."""
    wait = 0.25
    while True:
        try:
            return action()
        except OperationalError as exc:
            if time.monotonic() + wait > until:
                raise
            if wait == 0.25:
                log.warning(
                    "database.waiting",
                    what=what,
                    error=one_line(exc),
                    until_s=round(until - time.monotonic(), 1),
                )
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    """The applied revision(s), comma-separated when several branches are applied."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None


def head_revision(engine: Engine) -> str | None:
    """The newest revision(s) of the migration scripts, comma-separated when they branch."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_alembic_config(engine)).get_heads()
    return ",".join(sorted(heads)) or None


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    head = head_revision(engine)
    if before != head:
        # "heads": independent branches of migrations (merged later) all apply.
        command.upgrade(_alembic_config(engine), "heads")
    return before, head
