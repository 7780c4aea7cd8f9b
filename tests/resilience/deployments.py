"""Feedsync deployments as users run them, for the resilience scenarios: the embedded
`python -m worker run`, or a Celery worker and beat (tests/worker/test_fleet.py's Fleet), as real
processes on real PostgreSQL (and Redis) sending to the real protocol v1 destination.

A scenario kills or starves them, restarts them, waits until they converge by themselves, stops
them, and ends with `finish`: the reconciliation, no run left `running`, no process left behind,
and one line of figures.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.context import open_context
from config.settings import load_settings
from feeds.context import Context
from feeds.definitions import RunStatus
from feeds.history import job_runs
from feeds.history.job_runs import JobStatus
from feeds.state.tables import sync_runs
from tests.pipeline.test_parallel import children
from tests.resilience.servers import alive
from tests.worker.test_fleet import Fleet
from worker.testing.converge import pending
from worker.testing.destination_server import DestinationServer
from worker.testing.reconcile import Reconciliation, reconcile

ROOT = Path(__file__).resolve().parent.parent.parent

# The jobs that run every minute by default. The scenarios compress minutes into two seconds:
# that changes how often the jobs run, never what they do, and keeps each scenario in seconds.
MINUTE_JOBS = (
    "indexer_reindex_all_invalid",
    "indexer_update_all_views",
    "saas_data_exporter",
    "sales_data_exporter",
)
TICK = "* * * * * */2"


def tight_schedule(feeds: list[str]) -> str:
    """[jobs] tables running every minute job, and every feed's resend job, every two seconds."""
    jobs = [*MINUTE_JOBS, *(f"{feed}_feed_resend_failed_items" for feed in feeds)]
    return "".join(f'[jobs.{job}]\ncron = "{TICK}"\n' for job in jobs)


def sessions_alive(sessions: set[int]) -> dict[int, str]:
    """Live processes (not zombies) of these sessions, with their command lines: what a test
    started, and everything those started in turn (pool and reindex processes)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        state, session = fields[0], int(fields[3])
        if session in sessions and state != "Z":
            found[int(entry.name)] = cmdline.strip()
    return found


def wait_until(check: Callable[[], Any], timeout_s: float, what: Callable[[], str] | str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(
        f"timed out after {timeout_s} s waiting for {what if isinstance(what, str) else what()}"
    )


@dataclass(frozen=True)
class RunningRun:
    id: str
    feed: str
    operation: str
    pid: int  # the process running it (from its lock owner, machine:pid:token)


def running_runs(ctx: Context) -> list[RunningRun]:
    c = sync_runs.c
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(c.id, c.feed, c.operation, c.owner).where(c.status == RunStatus.RUNNING.value)
        ).all()
    return [RunningRun(r.id, r.feed, r.operation, int(r.owner.split(":")[1])) for r in rows]


class Deployment(abc.ABC):
    """One Feedsync deployment under test; `ctx` is the test's own view of its databases."""

    name: str
    env: dict[str, str]
    folder: Path
    ctx: Context

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.folder = folder
        self.ctx = open_context(load_settings(env))
        self.sessions: set[int] = set()

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process gracefully, as an operator does; each must exit 0."""

    @abc.abstractmethod
    def kill(self, victim: RunningRun) -> None:
        """kill -9 what this scenario kills, for the run in flight."""

    @abc.abstractmethod
    def restart(self) -> None:
        """Start again what `kill` killed (nothing when the deployment restarts it itself)."""

    def survivors(self) -> set[int]:
        """The sessions `kill` leaves running by design."""
        return set()

    # How many processes the last `kill` stopped mid-work: each may leave one round unrecorded.
    killed_processes: int = 1

    @abc.abstractmethod
    def logs(self) -> str: ...

    def close(self) -> None:
        """Kill whatever is left (after a failure) and close the test's context."""
        for pid in sessions_alive(self.sessions):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.ctx.close()


class Embedded(Deployment):
    """`python -m worker run`: jobs, realtime listener and metrics in one process, no broker."""

    name = "embedded run"

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        super().__init__(env, folder)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "run.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", "run", "--no-api", "--metrics-port", "0"],
            cwd=self.folder,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.sessions.add(self.process.pid)

    def kill(self, victim: RunningRun) -> None:
        assert self.process is not None
        assert victim.pid == self.process.pid, (victim, self.process.pid)
        self.process.kill()
        self.process.wait(10)
        # Its reindex processes end with it, on their own (feeds/parallel.py).
        wait_until(lambda: not sessions_alive({self.process.pid}), 10, "its processes to end")

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        assert code == 0, self.logs()[-3000:]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


class Celery(Deployment):
    """A Celery worker (the default concurrency: one pool process per core) and beat."""

    def __init__(self, env: dict[str, str], folder: Path, killed: str | None = None) -> None:
        super().__init__(env, folder)
        self.killed = killed  # what `kill` kills: "pool process" or "worker"
        self.name = f"Celery {killed}" if killed else "Celery worker and beat"
        self.fleet = Fleet(env, folder)

    def start(self) -> None:
        self._worker()
        self.fleet.wait_for_workers("w1")
        self.fleet.start("beat", "beat", "--loglevel", "INFO")
        self.sessions.add(self.fleet.procs["beat"].pid)

    def _worker(self) -> None:
        self.fleet.worker("w1", concurrency=None)
        self.sessions.add(self.fleet.procs["w1"].pid)

    def kill(self, victim: RunningRun) -> None:
        main = self.fleet.procs["w1"]
        assert victim.pid in children(main.pid), (victim, main.pid)
        if self.killed == "pool process":
            os.kill(victim.pid, signal.SIGKILL)
            wait_until(lambda: not alive(victim.pid), 10, "the pool process to die")
        else:  # the whole worker, main process and pool, as a lost host or an OOM-killed container
            self.killed_processes = len(children(main.pid))
            os.killpg(main.pid, signal.SIGKILL)
            main.wait(10)
            # SIGKILL is delivered to each process of the group on its way out of the kernel.
            wait_until(lambda: not sessions_alive({main.pid}), 10, "the worker's processes to die")

    def restart(self) -> None:
        if self.killed == "worker":
            self._worker()  # the same node name, as a supervisor restarts it

    def survivors(self) -> set[int]:
        kept = ["beat"] if self.killed == "worker" else ["beat", "w1"]
        return {self.fleet.procs[name].pid for name in kept}

    def stop(self) -> None:
        for name in ("beat", "w1"):
            process = self.fleet.procs[name]
            if process.poll() is None:
                self.fleet.stop(name)
                assert process.returncode == 0, self.fleet.tail(name)

    def logs(self) -> str:
        return self.fleet.log("w1") + self.fleet.log("beat")

    def close(self) -> None:
        self.fleet.close()
        super().close()


@dataclass
class Figures:
    """What a scenario measured, for the figures line and the JUnit properties."""

    scenario: str
    recover_s: float = 0.0
    delivered_before: int = 0  # items of the feed accepted before the fault
    extra: dict[str, Any] = field(default_factory=dict)


def converged(deployment: Deployment, destination: DestinationServer) -> Reconciliation | None:
    """The reconciliation once nothing is pending, no run is running and it passes; else None."""
    ctx = deployment.ctx
    if pending(ctx) or running_runs(ctx):
        return None
    result = reconcile(ctx, destination.holdings, destination.duplicates)
    return result if result.ok else None


def finish(
    deployment: Deployment,
    destination: DestinationServer,
    figures: Figures,
    record_property: Callable[[str, object], None],
) -> Reconciliation:
    """The end of every scenario: stop the deployment, then reconcile, no run `running`, no
    process left behind; print and record the figures."""
    deployment.stop()
    left = sessions_alive(deployment.sessions)
    assert not left, f"processes left behind: {left}"
    result = reconcile(deployment.ctx, destination.holdings, destination.duplicates)
    assert result.ok, result.problems()
    assert not result.running
    jobs = [r for r in job_runs.all_runs(deployment.ctx.db) if r.status is JobStatus.RUNNING]
    assert not jobs, f"job runs left running: {jobs}"
    assert destination.errors == []
    record_property("duplicates", result.duplicates)
    record_property("recover_s", round(figures.recover_s, 1))
    held = sum(feed.matched for feed in result.feeds.values())
    deleted = sum(feed.deleted for feed in result.feeds.values())
    extra = "".join(f", {k} {v}" for k, v in figures.extra.items())
    print(
        f"\n[resilience] {figures.scenario}: recovered in {figures.recover_s:.1f} s, "
        f"{result.duplicates} duplicates, {figures.delivered_before} accepted before the fault"
        f"{extra}; reconciled: {held} items held, {deleted} deleted, {len(result.feeds)} feeds"
    )
    return result
