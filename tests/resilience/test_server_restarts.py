"""PostgreSQL or Redis restarted under a running deployment: it recovers unattended (nobody
restarts Feedsync), says so in its logs, and the destination reconciles with the source.

The servers are the test's own (tests/resilience/servers.py): the shared CI servers are never
restarted. Each restart comes mid full sync, the destination answering slowly so that the sync is
still running when the server goes away for a couple of seconds. PostgreSQL is stopped the hard
way (`immediate`: no shutdown checkpoint, crash recovery at the start); Redis has no persistence,
so its restart loses the queue, the unacknowledged tasks, the tick claims and the job locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from feeds.clock import utcnow
from feeds.commerce import demo
from feeds.history import job_runs
from feeds.history.job_runs import JobStatus
from tests.resilience.deployments import (
    Celery,
    Deployment,
    Embedded,
    Figures,
    converged,
    finish,
    running_runs,
    tight_schedule,
    wait_until,
)
from tests.resilience.servers import (
    OwnPostgres,
    OwnRedis,
    own_postgres_cluster_fixture,  # noqa: F401 (a fixture)
    own_postgres_fixture,  # noqa: F401 (a fixture)
    own_redis_fixture,  # noqa: F401 (a fixture)
)
from tests.worker.test_fleet import json_events
from worker.testing.destination_server import DestinationServer

pytestmark = [pytest.mark.resilience, pytest.mark.postgres]

PRODUCTS = 3000
SLOW_S = 0.4
DOWN_S = 2.0  # how long the server stays away: a restart, not an outage
FEEDS = ["products", "productAttributes", "categories", "prices", "variants", "orders"]


def make(
    runner: str, env: dict[str, str], folder: Path, destination: DestinationServer
) -> Deployment:
    config = folder / "feedsync.toml"
    config.write_text(tight_schedule(FEEDS))
    env = {
        **env,
        "EXPORT_URL": destination.url,
        "FEEDSYNC_CONFIG": str(config),
        "LOG_FORMAT": "json",
    }
    made = Embedded(env, folder) if runner == "embedded run" else Celery(env, folder)
    demo.seed(made.ctx.source, PRODUCTS, seed=3)
    return made


def restart_mid_sync(
    deployment: Deployment,
    destination: DestinationServer,
    restart: Callable[[], None],
    what: str,
    record_property: Callable[[str, object], None],
) -> list[dict[str, Any]]:
    """Start the deployment, restart a server mid full sync, wait until it converged by itself
    and runs jobs again; finish the scenario and return the deployment's log events."""
    destination.slow_next(1_000_000, SLOW_S)
    deployment.start()

    def under_way() -> bool:
        products = [r for r in running_runs(deployment.ctx) if r.feed == "products"]
        return bool(products) and destination.count("products") >= 1000

    wait_until(under_way, 90, lambda: f"the full sync; {deployment.logs()[-3000:]}")
    delivered = destination.count("products")
    restart()
    back_at, back = time.monotonic(), utcnow()
    destination.slow_next(0, 0)

    def recovered() -> bool:
        # Jobs run again (not only the one that outlived the restart), and all is in sync.
        ran = [r for r in job_runs.all_runs(deployment.ctx.db) if r.started_at > back]
        done = any(r.status is JobStatus.SUCCESS for r in ran)
        return done and converged(deployment, destination) is not None

    wait_until(recovered, 120, lambda: f"recovery; {deployment.logs()[-5000:]}")
    figures = Figures(
        f"{what} restarted under the {deployment.name} mid full sync",
        recover_s=time.monotonic() - back_at,
        delivered_before=delivered,
    )
    finish(deployment, destination, figures, record_property)
    return json_events(deployment.logs())


def in_order(events: list[dict[str, Any]], *wanted: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether events matching each of `wanted` come in that order."""
    found = iter(events)
    return all(any(match(e) for e in found) for match in wanted)


def named(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("event") == name


@pytest.fixture(
    params=["embedded run", pytest.param("Celery worker and beat", marks=pytest.mark.fleet)]
)
def on_own_postgres(
    request: pytest.FixtureRequest,
    own_postgres: OwnPostgres,
    destination: DestinationServer,
    tmp_path: Path,
) -> Iterator[Deployment]:
    env = {"DATABASE_URL": own_postgres.create_database()}
    if request.param != "embedded run":
        env["BROKER_URL"] = request.getfixturevalue("redis_url")
    made = make(request.param, env, tmp_path, destination)
    try:
        yield made
    finally:
        made.close()


def test_a_postgresql_restart_mid_sync_is_recovered_unattended(
    on_own_postgres: Deployment,
    own_postgres: OwnPostgres,
    destination: DestinationServer,
    record_property: Callable[[str, object], None],
) -> None:
    events = restart_mid_sync(
        on_own_postgres,
        destination,
        lambda: own_postgres.restart("immediate", down_s=DOWN_S),
        "PostgreSQL",
        record_property,
    )
    assert in_order(
        events,
        named("database.connection_lost"),
        named("database.waiting"),  # the cut-short run waits to record its end, and its lock
        named("database.reconnected"),
    ), [e["event"] for e in events]
    # The run the restart cut short ended `error` with the database's reason, not `abandoned`.
    failed = [e for e in events if e["event"] == "run.failed" and e.get("feed") == "products"]
    assert failed and failed[0]["status"] == "error" and "connection" in failed[0]["error"]
    assert not [e for e in events if e["event"] == "runs.abandoned"]
    if isinstance(on_own_postgres, Embedded):
        assert in_order(events, named("realtime.listener_failed"), named("realtime.reconnected"))


@pytest.mark.fleet
def test_a_redis_restart_mid_sync_is_recovered_unattended(
    postgres_url: str,
    own_redis: OwnRedis,
    destination: DestinationServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """The queue, the unacknowledged task, the tick claims and the job locks are lost with it. The
    running job goes on (its feeds' locks are in PostgreSQL), the worker reconnects (Celery 5.7.0
    did not: worker/app.py's Consumer), beat sends again, and the next ticks run on the worker."""
    fleet = make(
        "Celery worker and beat",
        {"DATABASE_URL": postgres_url, "BROKER_URL": own_redis.url},
        tmp_path,
        destination,
    )
    assert isinstance(fleet, Celery)
    try:
        restart_mid_sync(
            fleet, destination, lambda: own_redis.restart(DOWN_S), "Redis", record_property
        )
        worker = json_events(fleet.fleet.log("w1"))
    finally:
        fleet.close()
    assert in_order(
        worker,
        lambda e: e["event"].startswith("consumer: Connection to broker lost"),
        lambda e: e["event"].startswith("Connected to redis://"),
    )
    assert not [e for e in worker if e["level"] == "critical"]  # no "Unrecoverable error"
    # Beat sends again: the jobs that ran since the restart (`restart_mid_sync` waits for them)
    # were sent by it, Redis having come back empty.
