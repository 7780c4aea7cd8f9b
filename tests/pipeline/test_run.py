"""The embedded all-in-one, as a user starts it: `python -m worker run --demo` in an empty folder."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tracking.test_realtime import wait_for
from tests.worker.test_metrics import scrape, value

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


def bare_process_env() -> dict[str, str]:
    """The environment of a user who set no Feedsync variable."""
    settings = ("DATABASE_URL", "SOURCE_", "EXPORT_", "BROKER_URL", "FEEDSYNC_", "METRICS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(settings)}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        yield int(other.getsockname()[1])


def run_briefly(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "run", *argv],
        cwd=folder,
        env=bare_process_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_refuses_to_start_when_the_api_port_is_busy(tmp_path: Path, busy_port: int) -> None:
    result = run_briefly(tmp_path, "--port", str(busy_port), "--metrics-port", "0")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"The API cannot listen on 127.0.0.1:{busy_port} (Address already in use); accepted: a "
        "free port in --port (0 picks one) on an address of this host in --host.\n"
    )
    assert list(tmp_path.iterdir()) == []  # no database, no export: nothing ran


def test_run_refuses_to_start_when_the_metrics_port_is_busy(tmp_path: Path, busy_port: int) -> None:
    result = run_briefly(tmp_path, "--port", "0", "--metrics-port", str(busy_port))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.endswith(
        f"The metrics port {busy_port} cannot be used (Address already in use); accepted: a free "
        "port in METRICS_PORT or --metrics-port (0 picks one).\n"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var" / "export").exists()  # no job ran
