"""API keys and their CLI, and the rate-limit counters, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from feeds.context import Context
from feeds.errors import FeedsyncError
from feeds.state.database import create_db_engine
from worker.api import apikeys
from worker.api.apikeys import rate_counters
from worker.api.ratelimit import Limit, RateLimiter
from worker.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_apikey_create_prints_the_key_alone_on_the_last_line(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "apikey:create",
        "--name",
        "ops",
        "--permission",
        "cdi.integration_list",
        "--permission",
        "sync.admin",
    )
    assert code == 0
    *_, raw = out.strip().splitlines()
    assert raw.startswith("fsk_") and " " not in raw and len(raw) >= 40
    db = create_db_engine(cli_env["DATABASE_URL"])
    key = apikeys.find_key(db, raw)
    assert key is not None
    assert (key.name, sorted(key.permissions)) == ("ops", ["cdi.integration_list", "sync.admin"])
    code, out, _ = run(capsys, "apikey:list")
    assert code == 0 and "| ops " in out and raw[:10] in out and raw not in out
    db.dispose()


def test_apikey_create_refuses_an_unknown_permission(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "apikey:create", "--name", "x", "--permission", "cdi.all")
    assert (code, out) == (1, "")
    assert err.strip() == (
        "'cdi.all' is not a permission; accepted permissions: cdi.integration_list, "
        "cdi.integration_sync, cdi.integration_job_status, sync.admin."
    )


def test_a_revoked_key_no_longer_authenticates(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "apikey:create", "--name", "old", "--permission", "sync.admin")
    code, out, _ = run(capsys, "apikey:create", "--name", "ops", "--permission", "sync.admin")
    raw = out.strip().splitlines()[-1]
    db = create_db_engine(cli_env["DATABASE_URL"])
    key = apikeys.find_key(db, raw)
    assert key is not None
    code, out, _ = run(capsys, "apikey:revoke", str(key.id))
    assert (code, out.strip()) == (0, f"API key {key.id} 'ops' has been revoked.")
    assert apikeys.find_key(db, raw) is None
    code, _, err = run(capsys, "apikey:revoke", str(key.id))
    assert code == 1 and err.strip() == (
        f"There is no active API key with id {key.id}; apikey:list shows the active keys."
    )
    _, listed, _ = run(capsys, "apikey:list")
    assert "| old " in listed and "| ops " not in listed
    _, everything, _ = run(capsys, "apikey:list", "--all")
    assert "| ops " in everything
    db.dispose()


def test_find_key_notes_the_last_use(ctx: Context) -> None:
    created, raw = apikeys.create_key(ctx.db, "ops", ["sync.admin"])
    assert created.last_used_at is None
    assert apikeys.find_key(ctx.db, raw) is not None
    [stored] = apikeys.list_keys(ctx.db)
    assert stored.last_used_at is not None
    assert apikeys.find_key(ctx.db, raw + "x") is None
    assert apikeys.find_key(ctx.db, "") is None


def test_a_key_needs_a_name_and_a_permission(ctx: Context) -> None:
    with pytest.raises(FeedsyncError, match="needs a name"):
        apikeys.create_key(ctx.db, "  ", ["sync.admin"])
    with pytest.raises(FeedsyncError, match="needs at least one permission"):
        apikeys.create_key(ctx.db, "ops", [])


def test_the_shared_secret_is_created_once(ctx: Context) -> None:
    first = apikeys.shared_secret(ctx.db, "cursor_signing_key")
    assert len(first) == 32
    assert apikeys.shared_secret(ctx.db, "cursor_signing_key") == first
    assert apikeys.shared_secret(ctx.db, "another") != first


def test_rate_limit_windows_roll_over_and_old_ones_are_dropped(ctx: Context) -> None:
    now = [datetime(2026, 11, 23, 10, 0, 50)]
    limiter = RateLimiter(ctx.db, lambda: now[0])
    limit = Limit("test", 3)
    verdicts = [limiter.hit(1, limit) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[-1].retry_after_s == 10
    assert limiter.hit(2, limit).allowed  # another key
    now[0] += timedelta(seconds=10)
    assert limiter.hit(1, limit).allowed  # a new minute
    with ctx.db.connect() as conn:
        windows = conn.scalar(
            select(func.count()).select_from(rate_counters).where(rate_counters.c.key_id == 1)
        )
    assert windows == 1
