"""The benchmark scripts still run: one cheap scenario at a tiny size (its figures are not checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_resilience_benchmark_runs_its_faults_scenario_to_a_reconciliation() -> None:
    # SQLite and 300 products; a late answer comes after a 1 s timeout instead of 30 s.
    command = [sys.executable, "benchmarks/resilience.py", "faults", "--quick", "--db", "sqlite"]
    command += ["--products", "300", "--timeout", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "requests" in done.stdout
    assert "reconciliation     ok, nothing lost" in done.stdout, done.stdout


def test_the_dashboard_benchmark_times_every_page_of_the_operators_view() -> None:
    # SQLite and 2,000 items, one timed request per page; the figures are not checked.
    command = [sys.executable, "benchmarks/dashboard.py", "--db", "sqlite"]
    command += ["--items", "2000", "--days", "1", "--repeat", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "seeded 2,000 items, 10,080 runs on sqlite" in done.stdout
    for page in (
        "/dashboard ",
        "/sync/feeds",
        "/dashboard/runs/",
        "/dashboard/items?q=",
        "/dashboard/trends",
    ):
        assert page in done.stdout, done.stdout
