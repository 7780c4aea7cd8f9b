"""How every resilience scenario ends: a reconciliation that must hold, no run left `running`, no
process left behind, and the scenario's figures printed on one line and attached to the test
report (`record_property`) for the benchmark and the docs to collect."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from feeds.context import Context
from feeds.definitions import RunStatus
from feeds.state.tables import sync_runs
from worker.testing.converge import Settled, settle
from worker.testing.destination_server import DestinationServer
from worker.testing.reconcile import Reconciliation, reconcile

RecordProperty = Callable[[str, object], None]


@dataclass
class Convergence:
    """The rounds of jobs and seconds a scenario took to converge, over one or more `settle` calls
    (faults on, then healed)."""

    rounds: int = 0
    seconds: float = 0.0
    converged: bool = False

    def settle(self, ctx: Context, max_rounds: int = 30) -> Settled:
        """Settle once more and add it up; `converged` tells whether this call got there."""
        settled = settle(ctx, max_rounds=max_rounds)
        self.rounds += settled.rounds or max_rounds
        self.seconds += settled.seconds
        self.converged = settled.converged
        return settled


def children() -> list[str]:
    """The command lines of this process's children (Linux /proc; zombies included), but for
    multiprocessing's resource tracker, which lives as long as this process by design."""
    found: list[str] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        for pid in pids:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # it ended meanwhile
            if "resource_tracker" not in command:
                found.append(f"{pid}: {command.strip() or '(zombie)'}")
    return found


# How a run that failed item by item explains itself (runs.failure_note); any other `error`, and
# any `rolled_back`, is a run an exception ended.
_ITEMS_FAILED = re.compile(r"^\d+ items failed, none was synced")


def runs_ended_by_exceptions(ctx: Context) -> list[str]:
    """The runs an exception ended, with why: the faults of a scenario must end as item outcomes."""
    c = sync_runs.c
    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(c.operation, c.status, c.message).where(
                c.status.in_((RunStatus.ERROR, RunStatus.ROLLED_BACK))
            )
        ).all()
    return [
        f"{row.operation} {row.status}: {row.message}"
        for row in rows
        if row.status == RunStatus.ROLLED_BACK or not _ITEMS_FAILED.match(row.message or "")
    ]


def running_runs(ctx: Context) -> list[str]:
    with ctx.db.connect() as conn:
        return list(
            conn.scalars(select(sync_runs.c.id).where(sync_runs.c.status == RunStatus.RUNNING))
        )


def end(
    ctx: Context,
    destination: DestinationServer,
    record_property: RecordProperty,
    *,
    scenario: str,
    load: str,
    faults: str,
    convergence: Convergence,
    feeds: list[str] | None = None,
) -> Reconciliation:
    """Reconcile and assert what every scenario promises; print and record the figures."""
    assert convergence.converged, f"{scenario}: the jobs did not converge"
    result = reconcile(ctx, destination.holdings, destination.duplicates, feeds)
    assert result.ok, result.problems()
    # (Not a test module: pytest does not rewrite these asserts, so each says what it found.)
    assert not (running := running_runs(ctx)), f"runs left running: {running}"
    assert not (ended := runs_ended_by_exceptions(ctx)), f"runs ended by exceptions: {ended}"
    assert not (left := children()), f"processes left behind: {left}"
    assert not destination.errors, f"the test destination failed: {destination.errors}"
    figures = {
        "scenario": scenario,
        "load": load,
        "faults": faults,
        "rounds": convergence.rounds,
        "seconds_to_converge": round(convergence.seconds, 2),
        "duplicates": result.duplicates,
        "requests": len(destination.requests),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(
        f"\nresilience {scenario}: {load}; faults {faults}; converged in "
        f"{convergence.seconds:.2f} s ({convergence.rounds} rounds), "
        f"{result.duplicates} duplicates, {len(destination.requests)} requests; {result.summary()}"
    )
    return result
