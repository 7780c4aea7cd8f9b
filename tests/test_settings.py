"""Settings are validated at start; a bad value is refused with one sentence naming setting and accepted values."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ExportMode, IndexerMode, load_settings
from feeds.context import check_against_feeds
from feeds.definitions import load_registry
from feeds.errors import ConfigError


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def toml(tmp_path: Path, content: str) -> dict[str, str]:
    path = tmp_path / "feedsync.toml"
    path.write_text(content)
    return {"FEEDSYNC_CONFIG": str(path)}


def test_defaults_need_nothing_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key in (
        "DATABASE_URL",
        "SOURCE_DATABASE_URL",
        "EXPORT_URL",
        "FEEDSYNC_CONFIG",
        "BROKER_URL",
        "EXPORT_BATCH_SIZE",
    ):
        monkeypatch.delenv(key, raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite:///./var/feedsync.db"
    assert settings.source_database_url == settings.database_url
    assert settings.export_url == "file://./var/export"
    assert settings.broker_url is None
    assert (
        settings.export_timeout_s,
        settings.export_batch_size,
        settings.export_daily_call_allocation,
    ) == (30, 500, None)


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EXPORT_BATCH_SIZE", raising=False)
    (tmp_path / ".env").write_text("EXPORT_BATCH_SIZE=42\n")
    assert load_settings().export_batch_size == 42


def test_plain_postgresql_url_uses_psycopg_3() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"})
    assert settings.database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DATABASE_URL": "not a url"},
            "DATABASE_URL 'not a url' is not a database URL; accepted: an SQLAlchemy URL",
        ),
        (
            {"SOURCE_DATABASE_URL": "mysql://x@y/z"},
            "SOURCE_DATABASE_URL uses 'mysql', which is not supported; accepted: sqlite or postgresql",
        ),
        (
            {"EXPORT_URL": "ftp://example"},
            "EXPORT_URL 'ftp://example' is not a destination; accepted: file:///path/to/dir",
        ),
        ({"EXPORT_BATCH_SIZE": "lots"}, "EXPORT_BATCH_SIZE = 'lots' is not accepted"),
        (
            {"EXPORT_BATCH_SIZE": "0"},
            "EXPORT_BATCH_SIZE = '0' is not accepted: Input should be greater than or equal to 1",
        ),
        (
            {"EXPORT_TIMEOUT_S": "-1"},
            "EXPORT_TIMEOUT_S = '-1' is not accepted: Input should be greater than 0",
        ),
        (
            {"LOG_FORMAT": "xml"},
            "LOG_FORMAT = 'xml' is not accepted; accepted values are 'console' or 'json'",
        ),
        (
            {"BROKER_URL": "kafka://x"},
            "BROKER_URL 'kafka://x' is not a broker URL; accepted: unset (embedded mode) or redis://",
        ),
    ],
)
def test_bad_environment_value_is_refused_naming_setting_and_accepted_values(
    env: dict[str, str], expected: str
) -> None:
    assert refused(env).startswith(expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '[feeds.products]\nexport_mode = "fast"\n',
            "feeds.products.export_mode = 'fast' is not accepted; accepted values are 'immediate' or 'legacy'",
        ),
        (
            '[feeds.products]\nindexer_mode = "nightly"\n',
            "feeds.products.indexer_mode = 'nightly' is not accepted; accepted values are 'realtime' or 'schedule'",
        ),
        (
            '[jobs.indexer_update_all_views]\ncron = "every minute"\n',
            "jobs.indexer_update_all_views.cron = 'every minute' is not accepted: 'every minute' is not a cron expression",
        ),
        (
            '[notifications]\nfrequency = "hourly"\n',
            "notifications.frequency = 'hourly' is not accepted; accepted values are 'off', 'immediately', 'daily' or 'weekly'",
        ),
        (
            '[feeds.products]\nexport_mod = "legacy"\n',
            "the setting feeds.products.export_mod is unknown; accepted keys: export_mode, indexer_mode, batch_size, collect_batch_size, reindex_processes, destination",
        ),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts = 0 is not accepted"),
        ("[feeds.products\n", "is not valid TOML"),
    ],
)
def test_bad_config_file_value_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    assert expected in refused(toml(tmp_path, content))


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    assert "does not exist" in refused({"FEEDSYNC_CONFIG": str(tmp_path / "nope.toml")})


def test_config_file_sets_modes_batch_size_and_crons(tmp_path: Path) -> None:
    settings = load_settings(
        toml(
            tmp_path,
            '[feeds.products]\nexport_mode = "legacy"\nindexer_mode = "realtime"\nbatch_size = 50\n'
            '[jobs.indexer_update_all_views]\ncron = "*/2 * * * *"\n',
        )
    )
    assert settings.feed("products").export_mode is ExportMode.LEGACY
    assert settings.feed("products").indexer_mode is IndexerMode.REALTIME
    assert settings.batch_size("products") == 50 and settings.batch_size("orders") == 500
    assert settings.file.jobs["indexer_update_all_views"].cron == "*/2 * * * *"


def test_unknown_feed_in_config_is_refused(tmp_path: Path) -> None:
    settings = load_settings(toml(tmp_path, '[feeds.produtcs]\nexport_mode = "legacy"\n'))
    with pytest.raises(
        ConfigError,
        match=r"\[feeds.produtcs\] names an unknown feed; accepted feeds: products, productAttributes",
    ):
        check_against_feeds(settings, load_registry())


def test_unknown_job_in_config_is_refused(tmp_path: Path) -> None:
    settings = load_settings(toml(tmp_path, '[jobs.reindex_everything]\ncron = "* * * * *"\n'))
    with pytest.raises(
        ConfigError,
        match=r"\[jobs.reindex_everything\] names an unknown job; accepted jobs: indexer_reindex_all_invalid",
    ):
        check_against_feeds(settings, load_registry())


def test_feed_module_that_cannot_be_imported_is_refused() -> None:
    with pytest.raises(
        ConfigError, match="feed_modules names 'no_such_module', which cannot be imported"
    ):
        load_registry(["no_such_module"])
