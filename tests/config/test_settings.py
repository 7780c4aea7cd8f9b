"""Settings are validated at start; a bad value is refused with one sentence naming setting and accepted values."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.context import check_against_feeds
from config.settings import load_settings
from feeds.definitions import ExportMode, IndexerMode, load_registry
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
            "the setting feeds.products.export_mod is unknown; accepted keys: export_mode, indexer_mode, batch_size, collect_batch_size, reindex_processes, destination, record_url, destination_url",
        ),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts = 0 is not accepted"),
        ("[feeds.products\n", "is not valid TOML"),
    ],
)
def test_bad_config_file_value_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    assert expected in refused(toml(tmp_path, content))


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    assert "does not exist" in refused({"FEEDSYNC_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"EXPORT_URL": "http://[::1"},
            "EXPORT_URL 'http://[::1' is not a destination: its host is not a complete [IPv6] "
            "address; accepted: file:///path/to/dir, file://./relative/dir or "
            "http(s)://host[:port][/path].",
        ),
        (
            {"EXPORT_URL": "https://api.example.com:70000/v1"},
            "EXPORT_URL 'https://api.example.com:70000/v1' is not a destination: its port is not "
            "a number from 1 to 65535; accepted: ",
        ),
        (
            {"EXPORT_URL": "http://api.example.com:0"},
            "EXPORT_URL 'http://api.example.com:0' is not a destination: its port is not a number",
        ),
        (
            {"EXPORT_URL": "http://api.example .com/v1"},
            "EXPORT_URL 'http://api.example .com/v1' is not a destination: it contains a space",
        ),
        (
            {"EXPORT_URL": "https://api.example.com/v1\t"},
            "EXPORT_URL 'https://api.example.com/v1\\t' is not a destination: it contains a space",
        ),
        (
            {"EXPORT_URL": "http:///v1"},
            "EXPORT_URL 'http:///v1' is not a destination: it has no host",
        ),
        (
            {"EXPORT_URL": "https://api.example.com/v1?key=1"},
            "is not a destination: it has a query or fragment, and the worker appends "
            "/feeds/<feed> to it",
        ),
        (
            {"EXPORT_URL": "https://user:s3cret@api.example.com:99999"},
            "EXPORT_URL 'https://user:***@api.example.com:99999' is not a destination",
        ),
        (
            {"BROKER_URL": "redis://:s3cret@127.0.0.1:70000/0"},
            "BROKER_URL 'redis://:***@127.0.0.1:70000/0' is not a broker URL: its port is not a "
            "number from 1 to 65535; accepted: unset (embedded mode) or redis://host:6379/0.",
        ),
        (
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:70000/test"},
            "DATABASE_URL names port 70000; accepted: an SQLAlchemy URL such as",
        ),
        (
            {"DATABASE_URL": "postgresql://postgres:s3cret@[::1/test"},
            "DATABASE_URL 'postgresql://postgres:***@[::1/test' is not a database URL",
        ),
    ],
)
def test_an_unusable_url_is_refused_at_start_saying_why(env: dict[str, str], expected: str) -> None:
    message = refused(env)
    assert expected in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8080/feedsync",
        "https://api.example.com:443/v1/",
        "https://user:token@api.example.com",
        "file:///srv/feedsync export",
    ],
)
def test_a_usable_destination_url_is_accepted(url: str) -> None:
    assert load_settings({"EXPORT_URL": url}).export_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '[jobs.indexer_update_all_views]\ncron = "* * * * * 0 2030"\n',
            "jobs.indexer_update_all_views.cron = '* * * * * 0 2030' is not accepted: it has 7 "
            "fields; accepted: five fields such as '* * * * *' or '*/5 * * * *' (a sixth, "
            "seconds, may follow).",
        ),
        (
            '[jobs.sync_history_cleanup]\ncron = "0 0 30 2 *"\n',
            "jobs.sync_history_cleanup.cron = '0 0 30 2 *' is not accepted: it never fires",
        ),
        (
            '[notifications]\nfrequency = "daily"\n',
            "notifications.webhook_url is not set, but frequency = 'daily' sends notifications "
            "to it; accepted: an http(s):// URL with a host, such as "
            "https://hooks.example.com/feedsync, or frequency = 'off'.",
        ),
        (
            '[notifications]\nfrequency = "immediately"\nwebhook_url = "https://hooks.example.com:0/x"\n',
            "notifications.webhook_url = 'https://hooks.example.com:0/x' is not accepted: its port "
            "is not a number from 1 to 65535; accepted: an http(s):// URL with a host",
        ),
        (
            '[notifications]\nfrequency = "weekly"\nwebhook_url = "https://hooks example.com"\n',
            "is not accepted: it contains a space or a control character; accepted: an http(s)://",
        ),
        (
            '[feeds.products]\ndestination = "http://[::1"\n',
            "feeds.products.destination = 'http://[::1' is not accepted: its host is not a "
            "complete [IPv6] address; accepted: file:///path/to/dir",
        ),
        (
            '[feeds.products]\ndestination = "sftp://files.example.com"\n',
            "feeds.products.destination = 'sftp://files.example.com' is not accepted: it is "
            "neither a file:// nor an http(s):// URL; accepted: file:///path/to/dir",
        ),
    ],
)
def test_a_config_file_value_the_workers_could_not_use_is_refused_at_start(
    tmp_path: Path, content: str, expected: str
) -> None:
    assert expected in refused(toml(tmp_path, content))


@pytest.mark.parametrize("cron", ["@hourly", "*/10 * * * * 30", "0 0 29 2 *"])
def test_shorthands_seconds_and_rare_dates_are_accepted_crons(tmp_path: Path, cron: str) -> None:
    settings = load_settings(toml(tmp_path, f'[jobs.sync_history_cleanup]\ncron = "{cron}"\n'))
    assert settings.file.jobs["sync_history_cleanup"].cron == cron


def test_notifications_off_need_no_webhook(tmp_path: Path) -> None:
    settings = load_settings(toml(tmp_path, '[notifications]\nfrequency = "off"\n'))
    assert settings.file.notifications.webhook_url is None


def test_a_config_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "feedsync.toml"
    path.write_bytes(b'[feeds.products]\ndestination = "file:///caf\xe9"\n')
    assert refused({"FEEDSYNC_CONFIG": str(path)}) == (
        f"FEEDSYNC_CONFIG file {str(path)!r} is not UTF-8 text (at byte 43); "
        "accepted: the path of a TOML file (UTF-8)."
    )


def test_a_config_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    assert refused({"FEEDSYNC_CONFIG": str(tmp_path)}) == (
        f"FEEDSYNC_CONFIG names {str(tmp_path)!r}, which is a folder; "
        "accepted: the path of a TOML file (UTF-8)."
    )


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


def test_a_dotenv_file_that_is_not_utf8_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b"EXPORT_URL=file:///caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"The .env file in {tmp_path} is not UTF-8 text (at byte 22); "
        "accepted: KEY=value lines in UTF-8."
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"EXPORT_TIMEOUT_S": "inf"},
            "EXPORT_TIMEOUT_S = 'inf' is not accepted: Input should be a finite number.",
        ),
        (
            {"EXPORT_TOKEN": "s3cret\n"},
            "EXPORT_TOKEN contains a space or a control character, which an HTTP header cannot "
            "carry; accepted: the token as the destination issued it.",
        ),
        (
            {"DATABASE_URL": "sqlite://"},
            "DATABASE_URL 'sqlite://' is an in-memory database, which every connection sees "
            "empty; accepted: an SQLAlchemy URL such as sqlite:///./var/feedsync.db",
        ),
        (
            {"SOURCE_DATABASE_URL": "sqlite:///:memory:"},
            "SOURCE_DATABASE_URL 'sqlite:///:memory:' is an in-memory database",
        ),
    ],
)
def test_a_value_that_would_break_the_workers_later_is_refused_at_start(
    env: dict[str, str], expected: str
) -> None:
    message = refused(env)
    assert message.startswith(expected)
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "[retry]\nbackoff_base_s = inf\nbackoff_max_s = inf\n",
            "retry.backoff_base_s = inf is not accepted: Input should be a finite number.",
        ),
        (
            "[jobs.indexer_update_all_views]\n",
            "jobs.indexer_update_all_views.cron is not set, and its table needs it.",
        ),
    ],
)
def test_a_config_file_value_that_is_infinite_or_missing_is_refused(
    tmp_path: Path, content: str, expected: str
) -> None:
    assert refused(toml(tmp_path, content)).endswith(expected)


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "feedsync.toml"
    path.write_text("[feeds.products]\nbatch_size = 50\n", encoding="utf-8-sig")
    assert load_settings({"FEEDSYNC_CONFIG": str(path)}).batch_size("products") == 50


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'record_url = "https://shop.example/admin/product"',
            "feeds.products.record_url = 'https://shop.example/admin/product' is not accepted: "
            "it has no placeholder; accepted: an http(s):// URL with {entity} (the entity key in "
            "the source) and/or {id} (the feed item id), such as "
            "'https://shop.example/admin/product/{entity}'.",
        ),
        (
            'record_url = "https://shop.example/p/{sku}"',
            "feeds.products.record_url = 'https://shop.example/p/{sku}' is not accepted: {sku} is "
            "not a placeholder; accepted: an http(s):// URL with {entity}",
        ),
        (
            'destination_url = "crm.example/{id}"',
            "feeds.products.destination_url = 'crm.example/{id}' is not accepted: it does not start "
            "with http:// or https://; accepted:",
        ),
        (
            'destination_url = "https://crm.example/{id"',
            "feeds.products.destination_url = 'https://crm.example/{id' is not accepted: its braces "
            "do not parse",
        ),
        (
            'record_url = "https://shop.example/{entity!r}"',
            "{entity} takes no format or conversion",
        ),
    ],
)
def test_a_record_url_template_is_checked_at_load(tmp_path: Path, line: str, expected: str) -> None:
    assert expected in refused(toml(tmp_path, f"[feeds.products]\n{line}\n"))


def test_record_url_templates_reach_the_feed_plan(tmp_path: Path) -> None:
    from config.context import feed_plan
    from feeds.history.record_links import links

    settings = load_settings(
        toml(
            tmp_path,
            '[feeds.products]\nrecord_url = "https://shop.example/admin/product/{entity}"\n'
            'destination_url = "https://crm.example/objects/products/{id}"\n',
        )
    )
    plan = feed_plan(settings, "products")
    found = links(plan.record_url, plan.destination_url, "sku/12 a", 12)
    assert found.source == "https://shop.example/admin/product/12"
    assert found.destination == "https://crm.example/objects/products/sku%2F12%20a"
    assert feed_plan(settings, "prices").record_url is None
