"""Servers of a test's own, for the scenarios that restart them: a `redis-server` and a PostgreSQL
cluster on free ports, which a test may stop and start again on the same port and data.

The shared CI servers are never restarted: other tests (and other checkouts) use them. Without the
binaries the scenarios skip with the reason, except under CI=true, where they fail.
PostgreSQL refuses to run as root, so as root (CI containers) it runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import IN_CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true the resilience scenarios must run.")
    pytest.skip(reason)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Running, not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class OwnRedis:
    """`redis-server` without persistence: a restart loses every key, as a lost cache node does."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every server process started, for the leftovers check

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pids.append(self.process.pid)
        _wait(lambda: listening(self.port), 10, f"redis-server on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: a clean shutdown; SIGKILL: the node lost. Either way the keys are gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class OwnPostgres:
    """A PostgreSQL cluster in a temporary folder owned by the user it runs as."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="feedsync-pg-"))
        self.data = self.folder / "data"
        self.logfile = self.folder / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.pids: list[int] = []

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder}"
            # The test server's own durability, not Feedsync's: an immediate stop still recovers.
            " -c fsync=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.logfile), "-w", "start"
        )
        self.pids.append(self.postmaster())

    def stop(self, mode: str = "fast") -> None:
        """`fast`: sessions cut, clean shutdown; `immediate`: as a crash, recovery at the next start."""
        if self.postmaster_file.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    @property
    def postmaster_file(self) -> Path:
        return self.data / "postmaster.pid"

    def postmaster(self) -> int:
        return int(self.postmaster_file.read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def _wait(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout_s} s")


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(name="own_redis")
def own_redis_fixture(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of this test's own on a free port, stopped afterwards (no process left)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    server = OwnRedis(str(binary), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)
    assert not [pid for pid in server.pids if alive(pid)], "a redis-server was left running"


@pytest.fixture(name="own_postgres_cluster", scope="module")
def own_postgres_cluster_fixture() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of this module's own (initdb once), removed afterwards."""
    bindir = postgres_bindir()
    if bindir is None:
        unavailable("the PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("PostgreSQL refuses root, and runuser is not installed to run it as postgres")
    cluster = OwnPostgres(bindir)  # type: ignore[arg-type]
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
    assert not [pid for pid in cluster.pids if alive(pid)], "a postgres server was left running"


@pytest.fixture(name="own_postgres")
def own_postgres_fixture(own_postgres_cluster: OwnPostgres) -> OwnPostgres:
    """The module's cluster, running (a test that stopped it and failed leaves it stopped)."""
    if not own_postgres_cluster.postmaster_file.exists():
        own_postgres_cluster.start()
    return own_postgres_cluster
