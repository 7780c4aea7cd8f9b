"""The `python -m worker` commands print what SPEC §4 (and Magento's bin/magento) print."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy.engine import make_url

from feeds.state.locks import Lock
from tests.conftest import POSTGRES_URL, require_postgres
from worker.cli import main
from worker.testing.destination_server import DestinationServer

ALL_IDS = [
    "catalog_data_exporter_products",
    "catalog_data_exporter_product_attributes",
    "catalog_data_exporter_categories",
    "catalog_data_exporter_product_prices",
    "catalog_data_exporter_product_overrides",
    "catalog_data_exporter_product_variants",
    "sales_data_exporter_orders",
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def seeded(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    code, out, err = run(capsys, "demo:seed", "--products", "300", "--seed", "3")
    assert code == 0, err
    return cli_env


def exported(export_dir: Path, feed: str) -> list[dict]:
    path = export_dir / f"{feed}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_info_lists_every_indexer_with_its_title(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "indexer:info")
    assert code == 0
    assert out.splitlines() == [
        "%-40s %s" % pair
        for pair in [
            ("catalog_data_exporter_products", "Product Feed"),
            ("catalog_data_exporter_product_attributes", "Product Attributes Feed"),
            ("catalog_data_exporter_categories", "Category Feed"),
            ("catalog_data_exporter_product_prices", "Prices Feed"),
            ("catalog_data_exporter_product_overrides", "Product Overrides Feed"),
            ("catalog_data_exporter_product_variants", "Product Variant Feed"),
            ("sales_data_exporter_orders", "Sales Order Feed"),
        ]
    ]


def test_show_mode_prints_title_and_mode(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "indexer:show-mode", "catalog_data_exporter_products", "sales_data_exporter_orders"
    )
    assert code == 0
    assert out.splitlines() == [
        "%-50s " % "Product Feed:" + "Update by Schedule",
        "%-50s " % "Sales Order Feed:" + "Update by Schedule",
    ]


def test_set_mode_reports_change_then_no_change(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "indexer:set-mode", "realtime", "catalog_data_exporter_categories")
    assert (code, out) == (
        0,
        "Index mode for Indexer Category Feed was changed from 'Update by Schedule' to 'Update on Save'\n",
    )
    code, out, _ = run(capsys, "indexer:set-mode", "realtime", "catalog_data_exporter_categories")
    assert (code, out) == (0, "Index mode for Indexer Category Feed has not been changed\n")
    _, out, _ = run(capsys, "indexer:show-mode", "catalog_data_exporter_categories")
    assert out.endswith("Update on Save\n")


@pytest.mark.parametrize("argv", [["indexer:set-mode"], ["indexer:set-mode", "sometimes"]])
def test_set_mode_refuses_a_missing_or_wrong_mode(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (1, "", "Accepted values for mode are 'realtime' or 'schedule'\n")


@pytest.mark.parametrize(
    "command",
    [
        "indexer:show-mode",
        "indexer:status",
        "indexer:reindex",
        "indexer:reset",
        "indexer:set-mode schedule",
        "indexer:set-status valid",
        "indexer:show-dimensions-mode",
    ],
)
def test_unknown_indexer_id_is_refused_before_any_work(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], export_dir: Path, command: str
) -> None:
    code, out, err = run(capsys, *command.split(), "catalog_data_exporter_products", "foo")
    assert code == 1 and out == ""
    assert err == (
        "The following requested index types are not supported: 'foo'.\n"
        f"Supported types: {', '.join(ALL_IDS)}\n"
    )
    assert not export_dir.exists()


def test_status_table_shows_status_mode_and_backlog(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    run(capsys, "demo:change", "--update", "3", "--delete", "1", "--seed", "5")
    run(capsys, "indexer:set-mode", "realtime", "sales_data_exporter_orders")
    code, out, _ = run(capsys, "indexer:status")
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(
        r"\| ID +\| Title +\| Status +\| Update On +\| Schedule Status +\| Schedule Updated +\|",
        lines[1],
    )
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[3:-1]]
    titles = [r[1] for r in rows]
    assert titles == sorted(titles)
    by_id = {r[0]: r for r in rows}
    products = by_id["catalog_data_exporter_products"]
    assert products[2:5] == ["Ready", "Schedule", "idle (4 in backlog)"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", products[5])
    assert by_id["catalog_data_exporter_categories"][2] == "Reindex required"
    assert by_id["sales_data_exporter_orders"][3:] == ["Save", "", ""]


def test_status_of_several_ids_shows_those_sorted_by_title_and_a_suspended_view(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    run(capsys, "indexer:set-status", "suspended", "catalog_data_exporter_product_overrides")
    run(capsys, "demo:change", "--update", "3", "--delete", "0", "--seed", "5")
    code, out, _ = run(
        capsys,
        "indexer:status",
        "catalog_data_exporter_products",
        "catalog_data_exporter_product_overrides",
        "catalog_data_exporter_categories",
    )
    assert code == 0
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()[3:-1]]
    assert [r[:5] for r in rows] == [
        ["catalog_data_exporter_categories", "Category Feed", "Reindex required", "Schedule"]
        + ["idle (0 in backlog)"],
        ["catalog_data_exporter_products", "Product Feed", "Ready", "Schedule"]
        + ["idle (3 in backlog)"],
        ["catalog_data_exporter_product_overrides", "Product Overrides Feed", "Suspended"]
        + ["Schedule", rows[2][4]],
    ]
    assert re.fullmatch(r"suspended \(\d+ in backlog\)", rows[2][4])
    assert rows[2][4] != "suspended (0 in backlog)"  # its changes wait for it too


def test_show_dimensions_mode_prints_none_for_every_feed(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "indexer:show-dimensions-mode",
        "catalog_data_exporter_product_prices",
        "sales_data_exporter_orders",
    )
    assert (code, out.splitlines()) == (
        0,
        ["%-50s none" % "Prices Feed:", "%-50s none" % "Sales Order Feed:"],
    )


@pytest.mark.parametrize(
    ("argv", "sentence"),
    [
        (
            ["catalog_data_exporter_product_prices", "website"],
            "Invalid value for 'indexer' argument: Prices Feed "
            "(catalog_data_exporter_product_prices) has no dimensions, as no feed has: it is "
            "built whole, never split by website or customer group, so there is no dimensions "
            "mode to set.",
        ),
        (
            [],
            "Missing argument 'indexer': feeds have no dimensions, so no indexer here has a "
            "dimensions mode to set.",
        ),
        (
            ["catalog_product_price", "website"],
            "The following requested index types are not supported: 'catalog_product_price'.\n"
            f"Supported types: {', '.join(ALL_IDS)}",
        ),
    ],
    ids=["a feed", "no indexer", "Magento's price indexer"],
)
def test_set_dimensions_mode_answers_that_feeds_have_no_dimensions_and_exits_1(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str], sentence: str
) -> None:
    code, out, err = run(capsys, "indexer:set-dimensions-mode", *argv)
    assert (code, out, err) == (1, "", sentence + "\n")


def test_reindex_prints_rebuilt_line_and_exports(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str], export_dir: Path
) -> None:
    code, out, _ = run(
        capsys,
        "indexer:reindex",
        "catalog_data_exporter_products",
        "catalog_data_exporter_categories",
    )
    assert code == 0
    assert re.fullmatch(
        r"Product Feed index has been rebuilt successfully in 00:00:\d\d\n"
        r"Category Feed index has been rebuilt successfully in 00:00:\d\d\n",
        out,
    )
    assert len(exported(export_dir, "products")) == 300


def test_reindex_of_a_locked_indexer_is_skipped(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from feeds.state.database import create_db_engine

    engine = create_db_engine(os.environ["DATABASE_URL"])
    other = Lock(engine, "indexer:catalog_data_exporter_products")
    assert other.acquire()
    code, out, _ = run(
        capsys,
        "indexer:reindex",
        "catalog_data_exporter_products",
        "catalog_data_exporter_categories",
    )
    other.release()
    engine.dispose()
    assert code == 1  # asked to rebuild it, it did not: a script must see that
    assert (
        out.splitlines()[0] == "Product Feed index is locked by another reindex process. Skipping."
    )
    assert out.splitlines()[1].startswith("Category Feed index has been rebuilt successfully in ")


def status_of(capsys: pytest.CaptureFixture[str], indexer_id: str) -> str:
    code, out, _ = run(capsys, "indexer:status", indexer_id)
    assert code == 0
    return [c.strip() for c in out.splitlines()[3].split("|")[1:-1]][2]


def test_reindex_refused_by_the_destination_says_so_exits_1_and_stays_reindex_required(
    seeded: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    destination: DestinationServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_URL", destination.url)
    destination.fail_next(1000, status=401)
    code, out, err = run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    assert code == 1 and "rebuilt successfully" not in out
    first, reason = [line for line in err.splitlines() if not line.startswith("{")]  # no logs
    assert first == "Product Feed index process error during indexation process:"
    assert reason.startswith("the run ended config_error: ") and "HTTP 401" in reason
    assert status_of(capsys, "catalog_data_exporter_products") == "Reindex required"
    destination.clear_faults()
    code, out, err = run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    assert (code, err) == (0, "")
    assert out.startswith("Product Feed index has been rebuilt successfully in ")
    assert status_of(capsys, "catalog_data_exporter_products") == "Ready"
    assert len(destination.accepted_ids("products")) == 300


def test_reindex_with_an_unreadable_source_table_is_an_error_not_a_success(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import text

    from feeds.state.database import create_db_engine

    engine = create_db_engine(os.environ["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE product_attribute_values RENAME TO pav_moved"))
    code, out, err = run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE pav_moved RENAME TO product_attribute_values"))
    engine.dispose()
    assert code == 1 and out == ""
    first, reason = [line for line in err.splitlines() if not line.startswith("{")]  # no logs
    assert first == "Product Feed index process error during indexation process:"
    assert reason.startswith("the run ended error: 300 items failed, none was synced; first: ")
    assert "pav_moved" not in reason and "product_attribute_values" in reason
    assert status_of(capsys, "catalog_data_exporter_products") == "Reindex required"


def test_reindex_with_rejected_items_succeeds_and_says_how_many(
    seeded: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    destination: DestinationServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_URL", destination.url)
    destination.reject(["1", "2", "3"], code="INVALID_VALUE")
    code, out, err = run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    assert (code, err) == (0, "")
    rebuilt, rejected = out.splitlines()
    assert rebuilt.startswith("Product Feed index has been rebuilt successfully in ")
    assert rejected == "3 items rejected by the destination: see sync:errors"


def test_reset_and_set_status(seeded: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "indexer:reindex", "catalog_data_exporter_products")
    code, out, _ = run(capsys, "indexer:reset", "catalog_data_exporter_products")
    assert (code, out) == (0, "Product Feed indexer has been invalidated.\n")
    code, out, _ = run(capsys, "indexer:set-status", "suspended", "catalog_data_exporter_products")
    assert (code, out) == (
        0,
        "Index status for Indexer 'Product Feed' was changed from 'invalid' to 'suspended'.\n",
    )
    _, out, _ = run(capsys, "indexer:status", "catalog_data_exporter_products")
    assert "| Suspended " in out
    code, _, err = run(capsys, "indexer:set-status", "broken")
    assert (code, err) == (
        1,
        'Invalid status "broken". Accepted values are "invalid", "suspended", "valid".\n',
    )


def test_cron_jobs_reindex_invalid_then_sync_changes_then_clean(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str], export_dir: Path
) -> None:
    code, out, _ = run(capsys, "cron:run", "indexer_reindex_all_invalid")
    assert code == 0
    assert "products: new 300, updated 0, deleted 0, skipped 0, failed 0" in out
    _, out, _ = run(capsys, "demo:change", "--update", "4", "--delete", "2", "--seed", "8")
    changed = orjson.loads(out)
    code, out, _ = run(capsys, "cron:run", "indexer_update_all_views")
    assert code == 0
    assert "products: new 0, updated 4, deleted 2, skipped 0, failed 0" in out
    tail = {i["id"]: i for i in exported(export_dir, "products")[300:]}
    assert sorted(tail, key=int) == sorted(changed["updated"] + changed["deleted"], key=int)
    assert all(tail[i]["deleted"] and tail[i]["data"] is None for i in changed["deleted"])
    code, out, _ = run(capsys, "cron:run", "indexer_clean_all_changelogs")
    assert code == 0 and "products: " in out


def test_the_overrides_feed_watches_its_table_and_the_products_sku(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str], export_dir: Path
) -> None:
    code, out, _ = run(capsys, "indexer:reindex", "catalog_data_exporter_product_overrides")
    assert code == 0 and out.startswith("Product Overrides Feed index has been rebuilt")
    first = exported(export_dir, "productOverrides")
    assert first and all(item["id"].count("-") == 2 for item in first)
    wholesale = next(i for i in first if i["data"]["customerGroupCode"] == "Wholesale")
    product = wholesale["data"]["productId"]
    hidden = next(i["data"]["productId"] for i in first if not i["data"]["displayable"])
    from sqlalchemy import text

    from feeds.state.database import create_db_engine

    engine = create_db_engine(os.environ["DATABASE_URL"])  # the application, in plain SQL
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE product_overrides SET displayable = false "
                "WHERE product_id = :p AND customer_group_id = 2"
            ),
            {"p": product},
        )
        conn.execute(text("UPDATE products SET sku = 'SKU-NEW' WHERE id = :p"), {"p": hidden})
    engine.dispose()
    with_sku = [i["id"] for i in first if i["data"]["productId"] == hidden]
    code, out, _ = run(capsys, "cron:run", "indexer_update_all_views")
    assert code == 0
    changed = len({wholesale["id"], *with_sku})
    assert f"productOverrides: new 0, updated {changed}, deleted 0, skipped 0" in out
    tail = {i["id"]: i["data"] for i in exported(export_dir, "productOverrides")[len(first) :]}
    assert len(tail) == changed and tail[wholesale["id"]]["displayable"] is False
    assert all(tail[i]["sku"] == "SKU-NEW" for i in with_sku)


def test_cron_run_refuses_an_unknown_job(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "cron:run", "make_coffee")
    assert code == 1 and err.startswith(
        "Unknown job 'make_coffee'; accepted jobs: indexer_reindex_all_invalid, "
    )


def test_demo_change_prints_affected_product_ids(
    seeded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo:change", "--update", "5", "--delete", "2", "--seed", "1")
    assert code == 0
    changed = orjson.loads(out)
    assert set(changed) == {"updated", "deleted"}
    assert len(changed["updated"]) == 5 and len(changed["deleted"]) == 2
    assert not set(changed["updated"]) & set(changed["deleted"])


def test_db_upgrade_reports_the_revision(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "db:upgrade")
    assert code == 0 and re.fullmatch(
        r"Database schema upgraded from empty to revision \d{4}\.\n", out
    )
    code, out, _ = run(capsys, "db:upgrade")
    assert code == 0 and re.fullmatch(r"Database schema is up to date \(revision \d{4}\)\.\n", out)


def test_module_entry_point_runs_as_a_real_process(cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "indexer:show-mode", "nope"],
        capture_output=True,
        text=True,
        env={**os.environ, **cli_env},
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "The following requested index types are not supported: 'nope'.\nSupported types: "
    )


# --- the environment fails: one sentence, exit 1, nothing written ------------------------------


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty folder and an environment with no Feedsync setting: each test sets its own."""
    for key in ("DATABASE_URL", "SOURCE_DATABASE_URL", "FEEDSYNC_CONFIG", "BROKER_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EXPORT_URL", f"file://{tmp_path / 'export'}")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused_sentence(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, ""), err
    assert "Traceback" not in err and err.count("\n") == 1
    return err.rstrip("\n")


@pytest.mark.parametrize("setting", ["DATABASE_URL", "SOURCE_DATABASE_URL"])
def test_a_database_server_that_is_not_running_is_one_sentence_naming_the_setting(
    bare_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setting: str,
) -> None:
    port = closed_port()
    monkeypatch.setenv(setting, f"postgresql://postgres:s3cret@127.0.0.1:{port}/feedsync")
    sentence = refused_sentence(capsys, "indexer:status")
    assert sentence == (
        f"The database of {setting} (postgresql+psycopg://postgres:***@127.0.0.1:{port}/feedsync) "
        "cannot be used: Connection refused; accepted: the URL of a running server, with a user "
        "and password it accepts."
    )
    assert list(bare_env.iterdir()) == []  # not even the worker database of the default URL


def test_a_login_the_database_server_refuses_is_one_sentence_without_the_password(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_postgres()
    server = make_url(POSTGRES_URL)
    wrong = server.set(username="feedsync_nobody", password="s3cret")
    monkeypatch.setenv("DATABASE_URL", wrong.render_as_string(hide_password=False))
    sentence = refused_sentence(capsys, "db:upgrade")
    assert sentence.startswith(
        f"The database of DATABASE_URL (postgresql+psycopg://feedsync_nobody:***@{server.host}:"
    )
    assert 'cannot be used: role "feedsync_nobody" does not exist; accepted: ' in sentence
    assert "s3cret" not in sentence


def test_an_sqlite_file_in_a_folder_that_cannot_be_created_is_one_sentence(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (bare_env / "var").write_text("a file where the folder should be")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./var/feedsync.db")
    assert refused_sentence(capsys, "apikey:list").startswith(
        "The database of DATABASE_URL (sqlite:///./var/feedsync.db) cannot be used: "
    )


def test_a_database_failing_after_the_start_is_one_sentence(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy.exc import OperationalError

    def server_gone(*_: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    monkeypatch.setattr("feeds.state.indexer_state.ensure_states", server_gone)
    assert refused_sentence(capsys, "indexer:status") == (
        "A database operation failed (server closed the connection); check the databases of "
        "DATABASE_URL and SOURCE_DATABASE_URL, or run again with -v for the traceback."
    )


def test_resync_of_a_feed_whose_source_tables_do_not_exist_is_one_sentence(
    bare_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refused_sentence(capsys, "saas:resync", "--feed", "prices").startswith(
        "Feed 'prices' watches source tables that do not exist: "
    )


def test_resync_on_the_fleet_with_a_broker_that_is_not_running_is_one_sentence(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv("BROKER_URL", f"redis://:s3cret@127.0.0.1:{port}/0")
    assert refused_sentence(capsys, "saas:resync", "--feed", "products", "--fleet") == (
        f"The broker of BROKER_URL (redis://:***@127.0.0.1:{port}/0) cannot be reached "
        f"(Error 111 connecting to 127.0.0.1:{port}. Connection refused); start it, or drop --fleet."
    )
    assert list(bare_env.iterdir()) == []


def test_resync_on_the_fleet_with_no_worker_listening_is_one_sentence(
    bare_env: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BROKER_URL", redis_url)
    assert refused_sentence(capsys, "saas:resync", "--feed", "products", "--fleet").startswith(
        "No Celery worker answered on BROKER_URL; start one with `celery -A worker worker`"
    )
    assert list(bare_env.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "option", "value"),
    [
        ("api --port -1", "--port", "-1"),
        ("api --port 65536", "--port", "65536"),
        ("run --port http", "--port", "http"),
        ("run --metrics-port 70000", "--metrics-port", "70000"),
    ],
)
def test_a_port_out_of_range_is_refused_with_one_sentence(
    bare_env: Path, capsys: pytest.CaptureFixture[str], argv: str, option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse stops the command line
        main(argv.split())
    out, err = capsys.readouterr()
    assert (exited.value.code, out) == (1, "")
    assert err == (
        f"Argument {option}: {value!r} is not a port; accepted: a number from 1 to 65535, "
        "or 0 for any free port.\n"
    )
    assert list(bare_env.iterdir()) == []


def test_api_refuses_a_busy_port_before_opening_the_database(
    bare_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        busy = other.getsockname()[1]
        assert refused_sentence(capsys, "api", "--port", str(busy)) == (
            f"The API cannot listen on 127.0.0.1:{busy} (Address already in use); accepted: a "
            "free port in --port (0 picks one) on an address of this host in --host."
        )
    assert list(bare_env.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value", "sentence"),
    [
        (
            "EXPORT_URL",
            "http://[::1",
            "EXPORT_URL 'http://[::1' is not a destination: its host is not a complete [IPv6] "
            "address; accepted: file:///path/to/dir, file://./relative/dir or "
            "http(s)://host[:port][/path].",
        ),
        (
            "FEEDSYNC_CONFIG",
            "[jobs.indexer_update_all_views]\ncron = '*/2 * * * * 0 2030'\n",
            "In {path}, jobs.indexer_update_all_views.cron = '*/2 * * * * 0 2030' is not "
            "accepted: it has 7 fields; accepted: five fields such as '* * * * *' or "
            "'*/5 * * * *' (a sixth, seconds, may follow).",
        ),
        (
            "FEEDSYNC_CONFIG",
            "[notifications]\nfrequency = 'daily'\n",
            "In {path}, notifications.webhook_url is not set, but frequency = 'daily' sends "
            "notifications to it; accepted: an http(s):// URL with a host, such as "
            "https://hooks.example.com/feedsync, or frequency = 'off'.",
        ),
        (
            "FEEDSYNC_CONFIG",
            b"[feeds.products]\nbatch_size = 50 # \xb5\n",
            "FEEDSYNC_CONFIG file {path!r} is not UTF-8 text (at byte 35); accepted: the path "
            "of a TOML file (UTF-8).",
        ),
        (
            "FEEDSYNC_CONFIG",
            None,  # a folder
            "FEEDSYNC_CONFIG names {path!r}, which is a folder; accepted: the path of a TOML "
            "file (UTF-8).",
        ),
    ],
)
def test_a_setting_the_workers_could_not_use_stops_the_command_before_any_work(
    bare_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str | bytes | None,
    sentence: str,
) -> None:
    path = str(bare_env / "config")
    if variable == "FEEDSYNC_CONFIG":
        if value is None:
            os.mkdir(path)
        else:
            Path(path).write_bytes(value if isinstance(value, bytes) else value.encode())
        value = path
    monkeypatch.setenv(variable, str(value))
    assert refused_sentence(capsys, "indexer:reindex") == sentence.format(path=path)
    assert [p.name for p in bare_env.iterdir()] == (["config"] if value == path else [])


@pytest.mark.parametrize(
    ("option", "sentence"),
    [
        ("--limit=-1", "Argument --limit: expected a positive number, got -1."),
        (
            "--since=yesterday",
            "Argument --since: 'yesterday' is not a date; accepted: YYYY-MM-DD or an ISO 8601 "
            "time.",
        ),
    ],
)
def test_sync_status_refuses_a_bad_option_with_one_sentence_before_opening_the_database(
    bare_env: Path, capsys: pytest.CaptureFixture[str], option: str, sentence: str
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse stops the command line
        main(["sync:status", option])
    out, err = capsys.readouterr()
    assert (exited.value.code, out, err) == (1, "", sentence + "\n")
    assert list(bare_env.iterdir()) == []


def test_sync_status_until_bounds_the_start_time_and_a_bare_date_includes_that_day(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime

    import orjson

    from config.context import open_context
    from config.settings import load_settings
    from feeds.state.tables import sync_runs

    ctx = open_context(load_settings(cli_env))
    with ctx.db.begin() as conn:
        conn.execute(
            sync_runs.insert(),
            [
                {
                    "id": run_id,
                    "feed": "products",
                    "operation": "partial_sync",
                    "status": "success",
                    "started_at": started,
                    "finished_at": started,
                }
                for run_id, started in (
                    ("a", datetime(2026, 11, 20, 9, 0)),
                    ("b", datetime(2026, 11, 21, 23, 59)),
                    ("c", datetime(2026, 11, 22, 0, 0)),
                )
            ],
        )
    ctx.close()

    def ids(*argv: str) -> list[str]:
        assert main(["sync:status", "--json", *argv]) == 0
        return [orjson.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]

    assert ids("--until", "2026-11-21") == ["b", "a"]
    assert ids("--until", "2026-11-21T23:59:00Z") == ["a"]
    assert ids("--since", "2026-11-21", "--until", "2026-11-22") == ["c", "b"]
    with pytest.raises(SystemExit):
        main(["sync:status", "--until", "soon"])
    assert "Argument --until: 'soon' is not a date" in capsys.readouterr().err
