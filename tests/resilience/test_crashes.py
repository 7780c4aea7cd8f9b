"""kill -9 mid-run, then a restart: the deployment converges by itself and the destination
reconciles with the source.

Killed: the embedded `python -m worker run`, a Celery pool process (the worker starts another),
or a whole Celery worker (main process and pool, restarted as a supervisor would). Mid: the first
full sync of the catalog, a partial sync of changed and deleted products, a resend of retryable
failures, a legacy-mode export. A slow destination (each answer waits) makes the run last long
enough to be killed after part of the items were accepted. The items accepted in the request in
flight are not recorded, so they are sent again: counted as duplicates, at most one round.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from feeds.commerce import demo
from feeds.definitions import ItemStatus, Operation, RunStatus
from feeds.history.runs import ABANDONED
from feeds.state.tables import items, sync_runs
from tests.pipeline.test_parallel import children
from tests.resilience.deployments import (
    Celery,
    Deployment,
    Embedded,
    Figures,
    RunningRun,
    converged,
    finish,
    running_runs,
    sessions_alive,
    tight_schedule,
    wait_until,
)
from tests.resilience.servers import alive
from worker.fanout import RANGE_TASK as RANGE
from worker.jobs import JobFailed, run_job
from worker.testing.converge import settle, time_passes
from worker.testing.destination_server import DestinationServer

pytestmark = [pytest.mark.resilience, pytest.mark.postgres]

PRODUCTS = 3000
UPDATED, DELETED = 1500, 60
FEEDS = ["products", "productAttributes", "categories", "prices", "variants", "orders"]
SLOW_S = 0.4  # each answer of the destination while the run is to be killed
KILLED_AFTER = 1000  # products accepted in the run before the kill
LEGACY = '[feeds.products]\nexport_mode = "legacy"  # the legacy export is what this kills\n'


def items_with_status(deployment: Deployment, status: ItemStatus) -> int:
    with deployment.ctx.db.connect() as conn:
        return int(
            conn.scalar(
                select(func.count())
                .select_from(items)
                .where(items.c.feed == "products", items.c.status == int(status))
            )
            or 0
        )


def change_catalog(deployment: Deployment) -> None:
    demo.change(deployment.ctx.source, update=UPDATED, delete=DELETED, seed=5)


# -- what runs when the kill lands: the state before it, and the run to kill --------------------


def before_full_sync(deployment: Deployment, destination: DestinationServer) -> None:
    """Nothing: every indexer starts `Reindex required`, the deployment's first job syncs all."""


def before_partial_sync(deployment: Deployment, destination: DestinationServer) -> None:
    assert settle(deployment.ctx).converged
    change_catalog(deployment)


def before_resend(deployment: Deployment, destination: DestinationServer) -> None:
    """The changes' partial sync met a destination that was down: they wait for a resend."""
    assert settle(deployment.ctx).converged
    destination.fail_next(1_000_000, status=503)
    change_catalog(deployment)
    with pytest.raises(JobFailed):
        run_job(deployment.ctx, "indexer_update_all_views")
    destination.clear_faults()
    assert items_with_status(deployment, ItemStatus.RETRYABLE) == UPDATED + DELETED
    time_passes(deployment.ctx)  # the backoff (60 s by default) is over


def before_legacy_export(deployment: Deployment, destination: DestinationServer) -> None:
    """The catalog was collected into the feed table; `saas_data_exporter` sends it."""
    run_job(deployment.ctx, "indexer_reindex_all_invalid")


OPERATIONS: dict[str, tuple[Operation, Callable[[Deployment, DestinationServer], None]]] = {
    "full sync": (Operation.REINDEX_INVALID, before_full_sync),
    "partial sync": (Operation.PARTIAL_SYNC, before_partial_sync),
    "resend": (Operation.RESEND_FAILED, before_resend),
    "legacy export": (Operation.LEGACY_EXPORT, before_legacy_export),
}


@pytest.fixture(
    params=[
        "embedded run",
        pytest.param("pool process", marks=pytest.mark.fleet),
        pytest.param("worker", marks=pytest.mark.fleet),
    ]
)
def deployment(
    request: pytest.FixtureRequest,
    operation: str,
    postgres_url: str,
    tmp_path: Path,
    destination: DestinationServer,
) -> Iterator[Deployment]:
    config = tmp_path / "feedsync.toml"
    config.write_text(tight_schedule(FEEDS) + (LEGACY if operation == "legacy export" else ""))
    env = {
        "DATABASE_URL": postgres_url,
        "EXPORT_URL": destination.url,
        "FEEDSYNC_CONFIG": str(config),
        "LOG_FORMAT": "json",
    }
    made: Deployment
    if request.param == "embedded run":
        made = Embedded(env, tmp_path)
    else:
        env["BROKER_URL"] = request.getfixturevalue("redis_url")
        made = Celery(env, tmp_path, killed=request.param)
    demo.seed(made.ctx.source, PRODUCTS, seed=3)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_killed_process_restarts_and_converges(
    deployment: Deployment,
    operation: str,
    destination: DestinationServer,
    record_property: Callable[[str, object], None],
) -> None:
    killed_operation, before = OPERATIONS[operation]
    before(deployment, destination)
    baseline = destination.count("products")
    destination.slow_next(1_000_000, SLOW_S)
    deployment.start()

    def in_flight() -> RunningRun | None:
        runs = [
            r
            for r in running_runs(deployment.ctx)
            if r.feed == "products" and r.operation == killed_operation.value
        ]
        done = destination.count("products") - baseline
        return runs[0] if runs and done >= KILLED_AFTER else None

    victim = wait_until(
        in_flight, 90, lambda: f"the {operation} to be under way; {deployment.logs()[-3000:]}"
    )
    deployment.kill(victim)
    killed_at = time.monotonic()
    delivered = destination.count("products") - baseline
    # Nothing it started survives it (reindex processes die with their parent).
    assert not alive(victim.pid) and not children(victim.pid)
    assert not sessions_alive(deployment.sessions - deployment.survivors())
    destination.slow_next(0, 0)
    deployment.restart()
    result = wait_until(
        lambda: converged(deployment, destination),
        120,
        lambda: f"convergence; {deployment.logs()[-3000:]}",
    )
    figures = Figures(
        f"kill -9 of the {deployment.name} mid {operation}",
        recover_s=time.monotonic() - killed_at,
        delivered_before=delivered,
    )
    assert result.ok
    # The killed run is closed as what it was, by the restarted deployment: not left `running`.
    with deployment.ctx.db.connect() as conn:
        ended = conn.execute(
            select(sync_runs.c.status, sync_runs.c.message).where(sync_runs.c.id == victim.id)
        ).one()
    assert tuple(ended) == (RunStatus.ERROR.value, ABANDONED)
    result = finish(deployment, destination, figures, record_property)
    # Sent twice: at most the round each killed process had in flight (recorded per round).
    batch = deployment.ctx.settings.batch_size("products")
    assert result.duplicates <= deployment.killed_processes * batch, result.summary()


# -- a resync spread over the fleet (`saas:resync --fleet`) -------------------------------------

# A whole worker's range comes back only after Redis's visibility timeout (6 h by default): that
# is how a lost host is detected, so a shorter one only shortens the wait for it.
LOST_HOST = "[fleet]\nvisibility_timeout_s = 10\n"


@pytest.mark.fleet
@pytest.mark.parametrize("killed", ["pool process", "worker"])
def test_a_fleet_resync_whose_worker_is_killed_completes(
    killed: str,
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    destination: DestinationServer,
    record_property: Callable[[str, object], None],
) -> None:
    """kill -9 mid `saas:resync --fleet`: the range in flight is delivered again (at once for a
    pool process, after the visibility timeout for a whole worker) and the command completes."""
    config = tmp_path / "feedsync.toml"
    config.write_text(tight_schedule(FEEDS) + (LOST_HOST if killed == "worker" else ""))
    env = {
        "DATABASE_URL": postgres_url,
        "BROKER_URL": redis_url,
        "EXPORT_URL": destination.url,
        "FEEDSYNC_CONFIG": str(config),
        "LOG_FORMAT": "json",
    }
    fleet = Celery(env, tmp_path, killed=killed)
    try:
        demo.seed(fleet.ctx.source, PRODUCTS, seed=3)
        assert settle(fleet.ctx).converged  # the first sync is done: the resync resends it all
        baseline = destination.count("products")
        destination.slow_next(1_000_000, SLOW_S)
        fleet.start()
        command = subprocess.Popen(
            [sys.executable, "-m", "worker", "saas:resync", "--feed", "products", "--fleet"],
            cwd=tmp_path,
            env=fleet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        fleet.sessions.add(command.pid)

        ranges: list[int] = []  # the pool processes running a range

        def range_in_flight() -> RunningRun | None:
            if destination.count("products") - baseline < KILLED_AFTER // 2:
                return None
            active = fleet.fleet.app.control.inspect(timeout=0.5).active() or {}
            ranges[:] = [
                t["worker_pid"] for ts in active.values() for t in ts if t["name"] == RANGE
            ]
            runs = [r for r in running_runs(fleet.ctx) if r.feed == "products"]
            return RunningRun(runs[0].id, "products", "full_sync", ranges[0]) if ranges else None

        victim = wait_until(
            range_in_flight, 90, lambda: f"a range in flight; {fleet.logs()[-3000:]}"
        )
        fleet.kill(victim)
        lost = 1 if killed == "pool process" else len(ranges)  # ranges whose process died
        killed_at = time.monotonic()
        delivered = destination.count("products") - baseline
        destination.slow_next(0, 0)
        fleet.restart()
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, err[-3000:]
        assert out.splitlines()[-1].startswith("Resync of products success:"), out
        # A resync sends every product again, by design; what the kill cost is what it sent
        # more than that.
        twice = destination.count("products") - baseline - PRODUCTS
        figures = Figures(
            f"kill -9 of a Celery {killed} mid saas:resync --fleet",
            recover_s=time.monotonic() - killed_at,
            delivered_before=delivered,
            extra={"products resent by the kill": twice},
        )
        wait_until(lambda: converged(fleet, destination), 60, "convergence")
        finish(fleet, destination, figures, record_property)
        record_property("resent_by_the_kill", twice)
        # A range delivered again resends only its round in flight, not what it had sent.
        assert twice <= lost * fleet.ctx.settings.batch_size("products"), (twice, lost)
    finally:
        fleet.close()
