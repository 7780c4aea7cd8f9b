"""The processes of a full reindex end with their parent (feeds/parallel.py): a kill -9 of
`saas:resync` or `run` mid-reindex leaves no process behind, and nothing more reaches the
destination. Real commands on the default settings, a catalog large enough for several processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tracking.test_realtime import wait_for
from worker.testing.destination_server import DestinationServer

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = 12_000  # 6 chunks of the default collect_batch_size: one process per core


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid` (from /proc), with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def running(pid: int) -> bool:
    """Alive, not a zombie (the container's init may be slow to reap an orphan, or never do)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


@pytest.fixture
def env(
    postgres_url: str,
    destination: DestinationServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The default settings (no FEEDSYNC_CONFIG) on a seeded catalog, sending to `destination`."""
    values = {"DATABASE_URL": postgres_url, "EXPORT_URL": destination.url, "LOG_FORMAT": "json"}
    for key in ("SOURCE_DATABASE_URL", "FEEDSYNC_CONFIG", "BROKER_URL", "EXPORT_BATCH_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    from worker.cli import main

    assert main(["demo:seed", "--products", str(PRODUCTS)]) == 0
    return {**os.environ, **values, "PYTHONPATH": str(ROOT)}


@pytest.mark.postgres
@pytest.mark.skipif(
    min(os.cpu_count() or 1, 4) < 2, reason="one core: the reindex starts no process"
)
@pytest.mark.parametrize(
    "command",
    [
        ["saas:resync", "--feed", "products"],
        ["run", "--port", "0", "--metrics-port", "0"],
    ],
    ids=["saas:resync", "run"],
)
def test_the_reindex_processes_end_when_their_parent_is_killed(
    env: dict[str, str], destination: DestinationServer, tmp_path: Path, command: list[str]
) -> None:
    destination.slow_next(10_000, 0.3)  # 4 requests per chunk: the reindex takes a while
    log = tmp_path / "command.log"
    parent = subprocess.Popen(
        [sys.executable, "-m", "worker", *command],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    spawned: dict[int, str] = {}
    try:
        # Both reindex processes are sending products.
        wait_for(
            lambda: (
                sum(r.feed == "products" for r in list(destination.requests)) >= 2
                or parent.poll() is not None
            ),
            60,
        )
        assert parent.poll() is None, log.read_text()[-3000:]
        spawned = children(parent.pid)
        workers = [pid for pid, cmdline in spawned.items() if "spawn_main" in cmdline]
        assert len(workers) >= 2, spawned
        parent.kill()
        parent.wait(10)
        took = wait_for(lambda: not any(running(pid) for pid in spawned), 3)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        for pid in spawned:  # left by a failure: do not leak them into other tests
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    gone_at = time.monotonic()
    time.sleep(2)
    late = [r for r in list(destination.requests) if r.time > gone_at]
    assert late == [], (
        f"{len(late)} requests after the processes ended ({took:.2f} s after the kill)"
    )


def _outlive_the_parent(parent: int) -> None:
    """A reindex process where the kernel's parent-death signal is not available (not Linux)."""
    from feeds.pipeline import parallel

    sys.platform = "darwin"
    parallel._end_with(parent)
    time.sleep(60)


def test_without_the_kernel_signal_a_reindex_process_ends_once_handed_to_another_parent(
    tmp_path: Path,
) -> None:
    script = (
        "import multiprocessing, os, sys, time\n"
        "from tests.pipeline.test_parallel import _outlive_the_parent\n"
        "child = multiprocessing.get_context('spawn').Process(\n"
        "    target=_outlive_the_parent, args=(os.getpid(),))\n"
        "child.start()\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        time.sleep(1)  # the child is up and watching
        assert running(child)
        parent.kill()
        parent.wait(10)
        wait_for(lambda: not running(child), 3)
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)
