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
