"""Shared fixtures: real SQLite files and real PostgreSQL schemas, settings, an opened context.

PostgreSQL tests use FEEDSYNC_TEST_POSTGRES_URL (default: the CI server on 127.0.0.1:5432, database
`test`), each in a schema of its own. Without a server they skip with the reason, except under
CI=true, where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config.context import open_context
from config.settings import Settings, load_settings
from feeds.context import Context
from feeds.definitions import FeedRegistry
from worker.testing.destination_server import DestinationServer

POSTGRES_URL = os.environ.get(
    "FEEDSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_postgres_error: list[str | None] = []


def _postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used (None when it can); checked once per session."""
    if not _postgres_error:
        try:
            engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _postgres_error.append(None)
        except Exception as exc:  # any failure to connect means "not available here"
            _postgres_error.append(
                f"PostgreSQL is not reachable at {POSTGRES_URL}: {type(exc).__name__}"
            )
    return _postgres_error[0]


def require_postgres() -> None:
    reason = _postgres_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true the PostgreSQL tests must run.")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


REDIS_URL = os.environ.get("FEEDSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Databases the Redis tests may take, one per test at a time; db 15 holds the claims, so that
# test runs in parallel (other checkouts, CI) never share or flush each other's database.
REDIS_TEST_DBS = range(8, 15)
REDIS_CLAIMS_DB = 15
_redis_error: list[str | None] = []


def require_redis() -> None:
    """Skip (fail under CI=true) when the test Redis server is not reachable."""
    if not _redis_error:
        from redis import Redis

        try:
            Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
            _redis_error.append(None)
        except Exception as exc:  # any failure to connect means "not available here"
            _redis_error.append(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    reason = _redis_error[0]
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true the Redis tests must run.")
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of the test's own (claimed among dbs 8-14, flushed before and after)."""
    require_redis()
    from redis import Redis

    claims = Redis.from_url(REDIS_URL, db=REDIS_CLAIMS_DB)
    owner = f"{os.getpid()}:{uuid.uuid4().hex}"
    db = next(
        (n for n in REDIS_TEST_DBS if claims.set(f"feedsync-test:db:{n}", owner, nx=True, ex=900)),
        None,
    )
    if db is None:
        pytest.fail(f"every Redis test database ({REDIS_TEST_DBS}) is taken by other test runs")
    client = Redis.from_url(REDIS_URL, db=db)
    client.flushdb()
    try:
        yield f"{REDIS_URL.rstrip('/')}/{db}"
    finally:
        client.flushdb()
        client.close()
        if claims.get(f"feedsync-test:db:{db}") == owner.encode():
            claims.delete(f"feedsync-test:db:{db}")
        claims.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The worker and source database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedsync.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    return tmp_path / "export"


def make_settings(db_url: str, export_dir: Path, config_path: Path | None = None) -> Settings:
    env = {"DATABASE_URL": db_url, "EXPORT_URL": f"file://{export_dir}", "LOG_FORMAT": "json"}
    if config_path is not None:
        env["FEEDSYNC_CONFIG"] = str(config_path)
    return load_settings(env)


@pytest.fixture
def settings(db_url: str, export_dir: Path) -> Settings:
    return make_settings(db_url, export_dir)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    context = open_context(settings)
    yield context
    context.close()


def context_with(settings: Settings, registry: FeedRegistry) -> Context:
    return open_context(settings, registry=registry)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, db_url: str, export_dir: Path, tmp_path: Path
) -> dict[str, str]:
    """Environment for running the CLI in-process (and for subprocesses) against the test databases."""
    env = {"DATABASE_URL": db_url, "EXPORT_URL": f"file://{export_dir}", "LOG_FORMAT": "json"}
    for key in ("SOURCE_DATABASE_URL", "FEEDSYNC_CONFIG", "BROKER_URL", "EXPORT_BATCH_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    return env


@pytest.fixture
def destination() -> Iterator[DestinationServer]:
    """A real protocol v1 destination on a local port; it must end with no internal error."""
    with DestinationServer() as server:
        yield server
    assert server.errors == []


def library_context(
    db_url: str,
    export_url: str,
    tmp_path: Path,
    *,
    books: int = 12,
    batch_size: int = 3,
    collect_batch_size: int = 6,
    extra: str = "",
    **env: str,
) -> Context:
    """A context on the library schema of tests/library_feeds.py: one author, `books` books, triggers on.

    Retries are fast (backoff 0.05–0.1 s, 5 attempts) so resend tests need not wait.
    """
    from tests.library_feeds import authors, metadata
    from tests.library_feeds import books as books_table

    config = tmp_path / "library.toml"
    config.write_text(
        'feed_modules = ["tests.library_feeds"]\nbuiltin_feeds = false\n'
        "[retry]\nbackoff_base_s = 0.05\nbackoff_max_s = 0.1\nmax_attempts = 5\n"
        f"[feeds.books]\nbatch_size = {batch_size}\ncollect_batch_size = {collect_batch_size}\n{extra}"
    )
    settings = load_settings(
        {
            "DATABASE_URL": db_url,
            "EXPORT_URL": export_url,
            "FEEDSYNC_CONFIG": str(config),
            "LOG_FORMAT": "json",
            **env,
        }
    )
    ctx = open_context(settings)
    metadata.create_all(ctx.source)
    with ctx.source.begin() as conn:
        conn.execute(authors.insert(), [{"id": 1, "name": "Le Guin"}])
        rows = [{"book_no": n, "title": f"Book {n}", "author_id": 1} for n in range(1, books + 1)]
        conn.execute(books_table.insert(), rows)
    from feeds.pipeline import indexer

    indexer.ensure_subscriptions(ctx)
    return ctx


# --- HTTP API ------------------------------------------------------------------------------


def make_api_key(ctx: Context, *permissions: str, name: str = "test") -> str:
    """A new API key with these permissions (all four when none are given); the raw key."""
    from worker.api import apikeys

    chosen = permissions or tuple(p.value for p in apikeys.Permission)
    return apikeys.create_key(ctx.db, name, chosen)[1]


def bearer(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


def as_dicts(records: Any) -> Any:
    """The read model's typed rows as plain dicts, for tests that compare them column by column."""
    if records is None:
        return None
    if isinstance(records, list):
        return [dataclasses.asdict(record) for record in records]
    return dataclasses.asdict(records)
