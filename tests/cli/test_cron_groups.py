"""Cron groups (SPEC §3): one job catalog, read by beat, the embedded runner, `cron:list`,
`cron:run` and the metrics; groups disabled, run and routed to a queue of their own."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.context import open_context
from config.settings import load_settings
from feeds.commerce.feeds import FEEDS
from feeds.errors import ConfigError
from feeds.schedule import JobGroup, catalog
from worker.cli import main

BUILTIN = [feed.name for feed in FEEDS]
INDEX = [
    "indexer_reindex_all_invalid",
    "indexer_update_all_views",
    "saas_data_exporter",
    "sales_data_exporter",
    "indexer_clean_all_changelogs",
]
RESENDS = [f"{feed}_feed_resend_failed_items" for feed in BUILTIN]
HISTORY = ["sync_history_cleanup", "sync_error_notifications"]
ACCEPTED = "accepted groups: index, resync_failed_feeds_data_exporter, sync_history."


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> dict[str, list[str]]:
    """The rows of a CLI table by their first cell."""
    return {
        cells[0]: cells
        for line in out.splitlines()[3:-1]
        if (cells := [c.strip() for c in line.split("|")[1:-1]])
    }


def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str) -> Path:
    path = tmp_path / "feedsync.toml"
    path.write_text(content)
    monkeypatch.setenv("FEEDSYNC_CONFIG", str(path))
    return path


def test_every_job_is_in_its_adobe_group() -> None:
    jobs = catalog(BUILTIN)
    by_group = {g: [j.name for j in jobs if j.group is g] for g in JobGroup}
    assert by_group == {
        JobGroup.INDEX: INDEX,
        JobGroup.RESYNC_FAILED: RESENDS,
        JobGroup.SYNC_HISTORY: HISTORY,
    }
    assert [j.feed for j in jobs if j.group is JobGroup.RESYNC_FAILED] == BUILTIN


def test_cron_list_shows_each_jobs_group_and_filters_by_group(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "cron:list")
    assert code == 0
    header = [c.strip() for c in out.splitlines()[1].split("|")[1:-1]]
    assert header == ["Job", "Cron", "Last Run", "Status", "Next Run", "Group"]
    rows = table(out)
    assert list(rows) == INDEX + HISTORY + RESENDS
    assert {name: row[5] for name, row in rows.items()} == {
        **dict.fromkeys(INDEX, "index"),
        **dict.fromkeys(HISTORY, "sync_history"),
        **dict.fromkeys(RESENDS, "resync_failed_feeds_data_exporter"),
    }
    code, out, _ = run(capsys, "cron:list", "--group", "resync_failed_feeds_data_exporter")
    assert code == 0 and list(table(out)) == RESENDS


@pytest.mark.parametrize(
    "argv",
    [["cron:list", "--group", "default"], ["cron:run", "--group", "indexers"]],
    ids=["cron:list", "cron:run"],
)
def test_an_unknown_group_is_refused_naming_the_accepted_groups(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == f"Unknown group '{argv[-1]}'; {ACCEPTED}\n"
    assert not (tmp_path / "feedsync.db").exists()  # refused before any work


@pytest.mark.parametrize(
    "argv", [["cron:run"], ["cron:run", "sync_history_cleanup", "--group", "index"]]
)
def test_cron_run_needs_one_job_or_one_group(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == "cron:run runs one job or one group: give a job name, or --group NAME.\n"


def test_cron_run_group_runs_every_job_of_the_group_in_order(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], export_dir: Path
) -> None:
    assert run(capsys, "demo:seed", "--products", "40", "--seed", "2")[0] == 0
    code, out, err = run(capsys, "cron:run", "--group", "index")
    assert code == 0, err
    finished = [
        line.split(" finished in ")[0] for line in out.splitlines() if " finished in " in line
    ]
    assert finished == INDEX
    assert "products: new 40, updated 0, deleted 0, skipped 0, failed 0" in out
    assert (export_dir / "products.jsonl").exists()
    _, out, _ = run(capsys, "cron:list")
    rows = table(out)
    assert all(rows[job][3] == "success" for job in INDEX)
    assert all(rows[job][2:4] == ["never", ""] for job in HISTORY + RESENDS)


def test_cron_run_group_says_what_each_resend_job_did(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "cron:run", "--group", "resync_failed_feeds_data_exporter")
    assert code == 0
    for feed, job in zip(BUILTIN, RESENDS, strict=True):
        assert f"{feed}: no failed item due for a resend\n{job} finished in " in out


def test_a_disabled_group_is_off_the_schedule_everywhere_and_runs_only_on_demand(
    cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import embedded
    from worker.beat import beat_schedule

    config(tmp_path, monkeypatch, "[groups.resync_failed_feeds_data_exporter]\nenabled = false\n")
    settings = load_settings()
    assert set(beat_schedule(settings)) == set(INDEX + HISTORY)
    ctx = open_context(settings)
    try:
        assert [e.name for e in embedded.schedule(ctx, datetime.now(UTC))] == INDEX + HISTORY
    finally:
        ctx.close()
    _, out, _ = run(capsys, "cron:list")
    rows = table(out)
    assert all(rows[job][4] == "disabled" for job in RESENDS)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[job][4]) for job in INDEX)
    code, out, _ = run(capsys, "cron:run", "products_feed_resend_failed_items")
    assert code == 0 and "products: no failed item due for a resend" in out


def test_the_metrics_list_every_job_with_its_group_and_whether_it_is_scheduled(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.metrics import JobsCollector

    config(tmp_path, monkeypatch, "[groups.sync_history]\nenabled = false\n")
    ctx = open_context(load_settings())
    try:
        [family] = JobsCollector(ctx).collect()
    finally:
        ctx.close()
    samples = {(s.labels["job"], s.labels["group"]): s.value for s in family.samples}
    assert samples == {
        **{(job, "index"): 1 for job in INDEX},
        **{(job, "sync_history"): 0 for job in HISTORY},
        **{(job, "resync_failed_feeds_data_exporter"): 1 for job in RESENDS},
    }


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        (
            "[groups.default]\nenabled = false\n",
            "the setting groups.default is unknown; accepted keys: index, "
            "resync_failed_feeds_data_exporter, sync_history.",
        ),
        (
            "[groups.index]\nqueue = 'fast lane'\n",
            "groups.index.queue = 'fast lane' is not accepted: it has a character a queue name "
            "cannot hold; accepted: a Celery queue name of letters, digits, '.', '_' or '-', "
            "such as 'resend'.",
        ),
        (
            "[groups.sync_history]\nqueue = ''\n",
            "groups.sync_history.queue = '' is not accepted: it is empty; accepted: a Celery "
            "queue name of letters, digits, '.', '_' or '-', such as 'resend'.",
        ),
        (
            "[groups.index]\nenabled = 'no'\n",
            "groups.index.enabled = 'no' is not accepted: Input should be a valid boolean.",
        ),
    ],
)
def test_a_bad_group_setting_is_refused_with_one_sentence(
    tmp_path: Path, content: str, sentence: str
) -> None:
    path = tmp_path / "feedsync.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings({"FEEDSYNC_CONFIG": str(path)})
    assert str(caught.value) == f"In {path}, {sentence}"


def test_a_group_routed_to_a_queue_sends_its_tasks_there_and_the_others_to_the_default(
    redis_url: str, tmp_path: Path
) -> None:
    from redis import Redis

    from worker.app import create_app

    path = tmp_path / "feedsync.toml"
    path.write_text("[groups.resync_failed_feeds_data_exporter]\nqueue = 'resend'\n")
    settings = load_settings(
        {"BROKER_URL": redis_url, "FEEDSYNC_CONFIG": str(path), "DATABASE_URL": "sqlite:///x.db"}
    )
    app = create_app(settings)
    app.send_task("feedsync.prices_feed_resend_failed_items")
    app.send_task("feedsync.orders_feed_resend_failed_items")
    app.send_task("feedsync.indexer_update_all_views")
    broker = Redis.from_url(redis_url)
    try:
        # Celery's Redis transport keeps each queue as a list of that name.
        assert (broker.llen("resend"), broker.llen("celery")) == (2, 1)
    finally:
        broker.close()
        app.close()


def test_an_integration_whose_syncing_job_is_off_the_schedule_has_no_next_run(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feeds.history.integrations import list_integrations

    def next_runs() -> dict[str, datetime | None]:
        ctx = open_context(load_settings())
        try:
            return {i.feed.name: i.next_scheduled_run for i in list_integrations(ctx)}
        finally:
            ctx.close()

    assert all(when is not None for when in next_runs().values())  # new indexers: reindex due
    config(tmp_path, monkeypatch, "[groups.index]\nenabled = false\n")
    assert set(next_runs().values()) == {None}
