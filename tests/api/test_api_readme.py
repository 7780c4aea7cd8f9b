"""The HTTP API commands of docs/api.md, run as written against a real `python -m worker api` (uvicorn in a
subprocess): only the port is changed. The worker database has products whose items 1 and 2 the
destination rejected, so that error ids 1 and 2 exist for the resync example.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from config.context import open_context
from config.settings import load_settings
from feeds.commerce import demo
from feeds.history import read_model
from feeds.pipeline import indexer
from tests.conftest import as_dicts
from worker.testing.destination_server import DestinationServer

ROOT = Path(__file__).resolve().parents[2]
README_PORT = "127.0.0.1:8000"


def api_section() -> str:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    start = text.index("\n## HTTP API\n")
    return text[start : text.index("\n## ", start + 5)]


def sh_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def worker_env(tmp_path: Path, destination: DestinationServer) -> Iterator[dict[str, str]]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SOURCE_DATABASE_URL", "FEEDSYNC_CONFIG", "BROKER_URL", "EXPORT_BATCH_SIZE")
    }
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'feedsync.db'}",
        "EXPORT_URL": destination.url,
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    ctx = open_context(load_settings(env))
    demo.seed(ctx.source, 30)
    destination.reject(["1", "2"], code="INVALID_VALUE", message="price must be >= 0")
    indexer.reindex(ctx, ctx.registry.get("products"))
    destination.clear_faults()
    with ctx.db.connect() as conn:
        assert sorted(e["id"] for e in as_dicts(read_model.list_errors(conn, feed="products"))) == [
            1,
            2,
        ]
    ctx.close()
    yield env


def start_server(
    command: str, port: int, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    argv = shlex.split(command.replace(README_PORT.split(":")[1], str(port)), comments=True)
    assert argv[:4] == ["python", "-m", "worker", "api"]
    server = subprocess.Popen(
        [sys.executable, *argv[1:]],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"the API did not start: {server.communicate()[0].decode()[-2000:]}")


def test_the_readme_curl_examples_work_as_written(
    worker_env: dict[str, str], tmp_path: Path, destination: DestinationServer
) -> None:
    setup, examples = sh_blocks(api_section())
    [create_key] = [line for line in setup.splitlines() if "apikey:create" in line]
    [serve] = [line for line in setup.splitlines() if line.startswith("python -m worker api ")]
    port = free_port()
    script = "\n".join(
        [
            "set -euo pipefail",
            # Every curl of the examples must succeed: an HTTP error fails the script.
            'curl() { command curl --fail-with-body "$@"; }',
            f'python() {{ "{sys.executable}" "$@"; }}',
            create_key,
            examples.replace(README_PORT, f"127.0.0.1:{port}"),
        ]
    )
    server = start_server(serve, port, worker_env, tmp_path)
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            env=worker_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0].decode()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log[-3000:]}"
    out = done.stdout
    assert '"integration_name":"products"' in out
    assert "HTTP/1.1 200 OK" in out and '"job_status":"' in out
    assert '{"message":"success"}' in out  # the queued sync
    assert '"resolved":[1,2],"still_failing":[]' in out
    assert '"frequency":"daily","webhook_url":"https://hooks.example.com/feedsync"' in out
    assert '"allocation":{"calls":5000,"source":"database"' in out
    assert '"feed":"products","indexer_id":"catalog_data_exporter_products"' in out
    assert '"items_recorded":false' in out and '"document_kept":false' in out
    assert '"window":"5d","step":"day","feed":"products"' in out
    assert "was changed from 'suspended' to 'invalid'." in out and '"action":"resume"' in out
    exported = list(csv.DictReader((tmp_path / "sync-errors.csv").open()))
    assert sorted(r["item_id"] for r in exported) == ["1", "2"]
    assert {"1", "2"} <= destination.accepted_ids("products")
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert not [line for line in lines if line.get("level") == "error"]
