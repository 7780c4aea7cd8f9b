"""Engines for the worker and source databases, and schema migrations of the worker database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from feeds.errors import DatabaseUnavailableError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def insert_for(dialect: str, table: Table) -> Any:
    """An INSERT for `table` that supports ON CONFLICT upserts on PostgreSQL and on SQLite."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


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
        return create_engine(url, pool_pre_ping=True, **kwargs)
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

    return engine


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
