"""The embedded all-in-one, as a user starts it: `python -m worker run --demo` in an empty folder."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.test_metrics import scrape, value
from tests.test_realtime import wait_for

PRODUCTS = 100


def exported_lines(folder: Path) -> int:
    path = folder / "var" / "export" / "products.jsonl"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_demo_serves_everything_in_one_process_and_stops_cleanly(
    tmp_path: Path, stop_with: signal.Signals
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DATABASE_URL", "SOURCE_", "EXPORT_", "BROKER_URL", "FEEDSYNC_", "METRICS_")
        )
    }
    env["LOG_FORMAT"] = "json"
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "run",
            "--demo",
            "--demo-products",
            str(PRODUCTS),
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--demo-change-every",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=stdout.open("wb"),
        stderr=stderr.open("wb"),
    )
    try:
        wait_for(lambda: "indexers" in stdout.read_text() or process.poll() is not None, 60)
        assert process.poll() is None, stderr.read_text()[-3000:]
        printed = stdout.read_text()
        metrics_url = re.search(r"metrics +: (http://\S+/metrics)", printed)
        dashboard_url = re.search(r"dashboard +: (http://\S+/dashboard)", printed)
        assert metrics_url and dashboard_url, printed
        assert f"exported items  : {tmp_path.resolve()}/var/export/<feed>.jsonl" in printed

        # The first full sync, then the demo's changes reaching the export within seconds
        # (products is in realtime mode in a fresh demo).
        wait_for(lambda: exported_lines(tmp_path) >= PRODUCTS, 60)
        first = exported_lines(tmp_path)
        wait_for(lambda: exported_lines(tmp_path) > first, 10)

        port = int(metrics_url.group(1).rsplit(":", 1)[1].split("/")[0])
        samples = scrape(port)
        assert value(samples, "feedsync_items_sent_total", feed="products") >= PRODUCTS
        assert value(samples, "feedsync_backlog", feed="prices") >= 0
        page = httpx.get(dashboard_url.group(1), timeout=10, follow_redirects=False)
        # The API answers: a browser without a session is sent to log in.
        assert (page.status_code, page.headers.get("location")) == (303, "/dashboard/login")
    finally:
        process.send_signal(stop_with)
        code = process.wait(30)
    assert code == 0, stderr.read_text()[-3000:]
    assert stdout.read_text().rstrip().endswith("Stopped.")
    assert "Traceback" not in stderr.read_text()
    # LOG_FORMAT=json: every line an event, the context bound (job, feed, run id).
    events = [json.loads(line) for line in stderr.read_text().splitlines()]
    assert events and all({"event", "level", "timestamp"} <= set(e) for e in events)
    synced = [e for e in events if e["event"] == "realtime.synced"]
    assert synced and all(
        e["job"] == "realtime_sync" and e["feed"] == "products" and len(e["run_id"]) == 32
        for e in synced
    )
    assert any(e["event"] == "job.finished" and e["job"] for e in events)


def test_logs_are_readable_lines_on_a_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    import structlog

    from worker import logs

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    logs.configure(None)
    with structlog.contextvars.bound_contextvars(job="indexer_update_all_views", feed="books"):
        structlog.get_logger("t").info("run.finished", updated=3)
        logging.getLogger("celery.worker").warning("Connection lost")
    lines = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue()).splitlines()  # colours off
    assert "run.finished" in lines[0] and "feed=books" in lines[0] and "updated=3" in lines[0]
    assert not lines[0].startswith("{")
    assert "Connection lost" in lines[1]

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    logs.configure(None)
    with structlog.contextvars.bound_contextvars(task_id="abc"):
        logging.getLogger("celery.worker").warning("Connection lost")
    [line] = sys.stderr.getvalue().splitlines()
    assert json.loads(line) | {"timestamp": "t"} == {
        "event": "Connection lost",
        "level": "warning",
        "logger": "celery.worker",
        "task_id": "abc",
        "timestamp": "t",
    }
    logs.configure("json", logging.WARNING)
