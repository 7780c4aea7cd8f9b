"""`saas:resync`, `sync:status` and `sync:errors` from the command line, against the real destination."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time

import orjson
import pytest
from sqlalchemy import text

from feeds.state.database import create_db_engine
from worker.cli import main
from worker.testing.destination_server import DestinationServer


@pytest.fixture
def http_env(
    cli_env: dict[str, str],
    destination: DestinationServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, str]:
    monkeypatch.setenv("EXPORT_URL", destination.url)
    assert main(["demo:seed", "--products", "120", "--seed", "2"]) == 0
    capsys.readouterr()
    return {**cli_env, "EXPORT_URL": destination.url}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_resync_prints_a_line_per_batch_and_a_summary(
    http_env: dict[str, str], destination: DestinationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "saas:resync", "--feed", "products", "--batch-size", "50", "--thread-count", "2"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(
        "products: 120/120 entities, new 120, updated 0, deleted 0, skipped 0, sent 120, failed 0"
    )
    assert re.fullmatch(
        r"Resync of products success: new 120, updated 0, deleted 0, skipped 0, sent 120, failed 0 in \d+\.\d s \(run [0-9a-f]{32}\)",
        lines[-1],
    )
    assert len(destination.accepted_ids("products")) == 120
    assert {len(r.ids) for r in destination.requests} == {50, 20}


def test_dry_run_prints_counts_and_sends_nothing(
    http_env: dict[str, str], destination: DestinationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "saas:resync", "--feed", "catalog_data_exporter_products", "--dry-run"
    )
    assert code == 0
    assert re.search(
        r"^Dry run of products: new 120, updated 0, deleted 0, skipped 0; nothing was sent or changed",
        out,
        re.M,
    )
    assert destination.requests == []
    _, out, _ = run(capsys, "sync:status", "--json")
    assert out == ""


def test_sync_status_and_errors_show_runs_and_categorised_errors(
    http_env: dict[str, str], destination: DestinationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    destination.reject(
        {"5", "6"}, code="INVALID_ENUM_VALUE", message='color "mauve" is not an option'
    )
    code, out, _ = run(capsys, "saas:resync", "--feed", "products")
    assert code == 0 and "Resync of products partial:" in out and "sent 118, failed 2" in out
    _, out, _ = run(capsys, "sync:status", "--feed", "products")
    assert re.search(
        r"\| products \| full_sync +\| partial \| 120 +\| 0 +\| 0 +\| 2 +\| 0 +\| 118 +\|", out
    )
    _, out, _ = run(capsys, "sync:status", "--json", "--status", "partial")
    [record] = [orjson.loads(line) for line in out.splitlines()]
    assert (record["rows_synced"], record["rows_failed_with_errors"], record["operation"]) == (
        118,
        2,
        "full_sync",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["started_at"])
    _, out, _ = run(capsys, "sync:errors", "--csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["item_id"] for r in table) == ["5", "6"]
    assert {(r["category"], r["code"], r["message"]) for r in table} == {
        ("picklists", "INVALID_ENUM_VALUE", 'color "mauve" is not an option')
    }
    _, out, _ = run(capsys, "sync:errors", "--category", "duplicates", "--csv")
    assert out.splitlines() == [
        "feed,item_id,category,code,message,first_seen,last_seen,attempts,resolved,run_id,field,value"
    ]


def test_sync_errors_csv_shows_a_formula_in_an_error_message_as_text(
    http_env: dict[str, str], destination: DestinationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    destination.reject({"7"}, code="INVALID_ENUM_VALUE", message='=HYPERLINK("http://x")')
    assert run(capsys, "saas:resync", "--feed", "products", "--by-ids", "7,8")[0] == 0
    _, out, _ = run(capsys, "sync:errors", "--csv")
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (row["item_id"], row["message"]) == ("7", '\'=HYPERLINK("http://x")')


def test_resync_option_mistakes_are_refused_with_one_sentence(
    http_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "saas:resync", "--feed", "products", "--continue-resync")
    assert (code, err) == (
        1,
        "There is no interrupted resync of feed 'products' to continue; start one with saas:resync --feed products.\n",
    )
    code, _, err = run(capsys, "saas:resync", "--feed", "products", "--no-reindex")
    assert code == 1 and err.startswith("--no-reindex resends the payloads kept in the feed table")
    code, _, err = run(capsys, "saas:resync", "--feed", "shoes")
    assert code == 1 and err.startswith(
        "The following requested index types are not supported: 'shoes'."
    )


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        ("", "--by-ids needs at least one item id; accepted: item ids separated by commas"),
        (",", "--by-ids needs at least one item id; accepted: item ids separated by commas"),
        ("7,,8", "--by-ids '7,,8' has an empty id; accepted: item ids separated by commas"),
        ("7,99999,abc", "Feed 'products' has no items with these ids: 99999, abc; accepted: "),
        ("-5,123456789012345678901234", "Feed 'products' has no items with these ids: -5, 1234"),
    ],
)
def test_resync_by_ids_refuses_empty_malformed_or_unknown_ids_before_any_run(
    http_env: dict[str, str],
    destination: DestinationServer,
    capsys: pytest.CaptureFixture[str],
    ids: str,
    error: str,
) -> None:
    code, out, err = run(capsys, "saas:resync", "--feed", "products", f"--by-ids={ids}")
    assert code == 1 and out == "" and err.startswith(error), err
    assert destination.requests == []
    code, out, _ = run(capsys, "sync:status", "--json")
    assert (code, out) == (0, "")  # no run recorded, not even a rolled-back one


def test_resync_killed_with_sigkill_continues_and_delivers_everything(
    http_env: dict[str, str], destination: DestinationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    destination.slow_next(1000, 0.05)  # about 10 items/s with batches of 1: time to kill it mid-way
    child = subprocess.Popen(
        [sys.executable, "-m", "worker", "saas:resync", "--feed", "products", "--batch-size", "1"],
        env={**os.environ, **http_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while destination.count("products") < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    delivered_before = destination.count("products")
    assert 30 <= delivered_before < 120
    destination.clear_faults()
    engine = create_db_engine(http_env["DATABASE_URL"])
    with engine.begin() as conn:
        states = dict(conn.execute(text("SELECT indexer_id, status FROM indexer_state")).all())
    engine.dispose()
    assert states["catalog_data_exporter_products"] == "working"
    # The killed run is not reported as running: the next look closes it, with the reason.
    code, out, _ = run(capsys, "sync:status", "--feed", "products", "--json")
    [killed] = [orjson.loads(line) for line in out.splitlines()]
    assert killed["status"] == "error" and killed["finished_at"] is not None
    assert killed["message"].startswith("abandoned: the process running it stopped")
    # Its lock needs no TTL to pass: its holder is known dead on this machine.
    code, out, _ = run(capsys, "saas:resync", "--feed", "products", "--continue-resync")
    assert code == 0, out
    assert len(destination.accepted_ids("products")) == 120
    # What was accepted before the kill is not sent again (at most the batch in flight is).
    assert destination.count("products") <= 120 + 1
    _, out, _ = run(capsys, "indexer:status", "catalog_data_exporter_products")
    assert "| Ready " in out


def test_a_reader_that_goes_away_stops_the_output_not_the_resync(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo:seed", "--products", "6000", "--seed", "2"]) == 0  # three progress lines
    capsys.readouterr()
    child = subprocess.Popen(
        [sys.executable, "-m", "worker", "saas:resync", "--feed", "products"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    assert child.stdout.readline().startswith(b"products: 2000/6000 entities")
    child.stdout.close()  # as `| head -1` does
    assert child.wait(timeout=120) == 0
    code, out, _ = run(capsys, "sync:status", "--json")
    [resync] = [orjson.loads(line) for line in out.splitlines()]
    assert (resync["status"], resync["rows_synced"]) == ("success", 6000)


# -- Adobe's options -------------------------------------------------------------------------

ADOBE_OPTIONS = [
    "--feed",
    "--no-reindex",
    "--cleanup-feed",
    "--dry-run",
    "--thread-count",
    "--batch-size",
    "--continue-resync",
    "--by-ids",
    "--id-type",
]


def test_resync_help_lists_adobes_options_in_adobes_order_then_fleet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["saas:resync", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    listed = re.findall(r"^  (--[a-z-]+)", out, re.M)
    assert listed == [*ADOBE_OPTIONS, "--fleet"]
    assert "[--thread-count THREAD-COUNT] [--batch-size BATCH-SIZE]" in " ".join(out.split())
    assert "[--by-ids BY-IDS] [--id-type ID-TYPE]" in " ".join(out.split())


@pytest.mark.parametrize(
    ("by_ids", "id_type"),
    [("SKU-00000003,SKU-00000004", "sku"), ("3,4", "productId"), ("3,4", "ProductID")],
)
def test_resync_by_product_skus_or_ids_resends_every_item_of_those_products(
    http_env: dict[str, str],
    destination: DestinationServer,
    capsys: pytest.CaptureFixture[str],
    by_ids: str,
    id_type: str,
) -> None:
    assert run(capsys, "saas:resync", "--feed", "prices")[0] == 0
    before = destination.count("prices")
    code, out, err = run(
        capsys, "saas:resync", "--feed", "prices", "--by-ids", by_ids, "--id-type", id_type
    )
    assert (code, err) == (0, "")
    # Unchanged, and resent all the same: four customer-group prices of each product.
    assert "skipped 0, sent 8, failed 0" in out.splitlines()[-1]
    resent = [r.ids for r in destination.requests][-1]
    assert sorted(resent) == [f"{p}-{g}" for p in (3, 4) for g in range(4)]
    assert destination.count("prices") == before + 8


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["--feed", "products", "--by-ids", "SKU-00000003,NOPE", "--id-type", "sku"],
            "The source has no products with these SKUs: NOPE; accepted: product SKUs separated "
            "by commas, such as --by-ids SKU-1,SKU-2.",
        ),
        (
            ["--feed", "orders", "--by-ids", "3", "--id-type", "productId"],
            "--id-type productId names products, and feed 'orders' is keyed by orders; accepted: "
            "--by-ids with its item ids, without --id-type.",
        ),
        (
            ["--feed", "products", "--by-ids", "3", "--id-type", "entity"],
            "--id-type 'entity' is not a type of id; accepted: sku or productId (without "
            "--id-type, --by-ids takes the feed's item ids).",
        ),
        (
            ["--feed", "products", "--id-type", "sku"],
            "--id-type says what the --by-ids values are; accepted: --by-ids with it, such as "
            "--by-ids SKU-1,SKU-2 --id-type sku.",
        ),
    ],
    ids=["unknown sku", "not a product feed", "unknown type", "no --by-ids"],
)
def test_resync_id_type_mistakes_are_refused_before_any_run(
    http_env: dict[str, str],
    destination: DestinationServer,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    error: str,
) -> None:
    code, out, err = run(capsys, "saas:resync", *argv)
    assert (code, out, err) == (1, "", error + "\n")
    assert destination.requests == []
