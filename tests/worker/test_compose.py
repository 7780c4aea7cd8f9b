"""docker-compose.yml and the Dockerfile, checked without Docker (it cannot run here).

The file is parsed and every service is held to what `docker compose up --scale worker=4` needs:
health checks, start order, commands that are real entry points of this code base, settings our
own loader accepts. The same topology runs with real processes (Redis, PostgreSQL, Celery
workers and beats, the listener) in tests/tracking/test_realtime_fleet.py and the fleet tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import load_settings
from worker.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "worker",
    "resend-worker",
    "beat",
    "listener",
    "api",
    "flower",
}
FEEDSYNC = SERVICES - {"redis", "postgres"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set in the environment: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_every_service_of_the_fleet_is_there(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == SERVICES


def test_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if name == "migrate":
            assert service["restart"] == "no"  # one-shot: it must not restart once done
            continue
        check = service.get("healthcheck", {}).get("test")
        assert check and check[0] == "CMD", f"{name} has no health check"
        if check[1:3] == ["python", "-c"]:
            compile(check[3], f"{name} healthcheck", "exec")  # valid Python


def test_start_order_waits_for_health_and_for_the_migration(compose: dict[str, Any]) -> None:
    s = services(compose)
    assert s["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "resend-worker", "beat", "listener", "api"):
        assert s[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert s["flower"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    # `--scale worker=4` fails on a fixed container name or a published host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["expose"] == ["9808"]
    assert worker["stop_grace_period"]  # time for the warm shutdown


def test_commands_are_real_entry_points(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name in FEEDSYNC:
        command = services(compose)[name]["command"]
        if command[:3] == ["python", "-m", "worker"]:
            args = parser.parse_args(command[3:])
            assert getattr(args, "handler", None), f"{name}: {shlex.join(command)}"
        else:
            assert command[:3] == ["celery", "-A", "worker"], name
            assert command[3] in ("worker", "beat", "flower"), name
    assert services(compose)["migrate"]["command"][3] == "db:upgrade"


def test_celery_finds_the_app_and_its_tasks_as_the_commands_name_them() -> None:
    # In a subprocess: the app module reads BROKER_URL once, at import.
    script = (
        "from celery.app.utils import find_app; app = find_app('worker'); "
        "app.loader.import_default_modules(); "
        "print(type(app).__name__, sorted(t for t in app.tasks if t.startswith('feedsync.')))"
    )
    env = {**os.environ, "BROKER_URL": "redis://redis:6379/0"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, tasks = done.stdout.split(" ", 1)
    assert kind == "Celery"
    assert "'feedsync.realtime_sync'" in tasks and "'feedsync.indexer_update_all_views'" in tasks


def mounted_config(compose: dict[str, Any], service: str) -> dict[str, Path]:
    """Where each TOML file of the compose file's `configs` is mounted in a service: target → file."""
    files = {name: ROOT / c["file"] for name, c in compose["configs"].items()}
    return {m["target"]: files[m["source"]] for m in services(compose)[service].get("configs", [])}


def test_the_environment_is_accepted_by_the_settings(compose: dict[str, Any]) -> None:
    for name in FEEDSYNC:
        env = {k: interpolate(str(v)) for k, v in services(compose)[name]["environment"].items()}
        # The TOML file as the container sees it: the repository file mounted there.
        env["FEEDSYNC_CONFIG"] = str(mounted_config(compose, name)[env["FEEDSYNC_CONFIG"]])
        settings = load_settings(env)
        assert settings.database_url.startswith("postgresql+psycopg://feedsync:")
        assert settings.broker_url == "redis://redis:6379/0"
        assert settings.source_database_url == settings.database_url
        assert settings.metrics_port == 9808


def test_resends_have_a_queue_and_workers_of_their_own(compose: dict[str, Any]) -> None:
    from worker.beat import task_routes

    s = services(compose)
    env = {k: interpolate(str(v)) for k, v in s["beat"]["environment"].items()}
    env["FEEDSYNC_CONFIG"] = str(mounted_config(compose, "beat")[env["FEEDSYNC_CONFIG"]])
    routes = task_routes(load_settings(env))
    assert routes == {
        f"feedsync.{feed}_feed_resend_failed_items": {"queue": "resend"}
        for feed in ("products", "productAttributes", "categories", "productOverrides")
        + ("prices", "variants", "orders")
    }

    def queues(service: str) -> str:
        command = s[service]["command"]
        return command[command.index("-Q") + 1]

    assert (queues("worker"), queues("resend-worker")) == ("celery", "resend")
    assert s["resend-worker"]["expose"] == ["9808"] and "ports" not in s["resend-worker"]


def test_the_image_holds_the_code_and_installs_it() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("config", "feeds", "worker", "migrations"):
        assert f"COPY {folder} ./{folder}" in dockerfile
        assert (ROOT / folder).is_dir()
    assert "RUN pip install ." in dockerfile
    assert re.search(r"^USER \w+", dockerfile, re.M)  # not root
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "var", "tests"} <= set(ignored)
