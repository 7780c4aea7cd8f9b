"""Resilience benchmark: a sync under destination faults, a large backlog, API load, a doubled fleet.

    python benchmarks/resilience.py faults  [--products 50000] [--db postgresql|sqlite]
    python benchmarks/resilience.py backlog [--products 1000000] [--db postgresql|sqlite]
    python benchmarks/resilience.py api     [--seconds 60] [--clients 50] [--db postgresql|sqlite]
    python benchmarks/resilience.py beats   [--minutes 3] [--redis redis://127.0.0.1:6379/3]
    python benchmarks/resilience.py --quick            # all four at small sizes: a smoke check

Each scenario prints a block of figures. Feedsync runs on its default settings throughout; where a
scenario needs another value it prints which and why. The test destination
(`python -m worker.testing.destination_server`) runs as a separate process in every scenario. The
databases are PostgreSQL (FEEDSYNC_BENCH_POSTGRES_URL), a schema of its own per scenario, dropped
at the end; or SQLite in a temporary directory.

  faults   Onboarding of the sample catalog (every indexer invalid: `indexer_reindex_all_invalid`
           is the full sync of its six feeds) against a destination failing 10% of requests with
           503, answering 5% with 429 (Retry-After 1 s, as delay-seconds and as an HTTP date in
           turn), 1% after the export timeout (applying them all the same), 3% with a 200 cut
           short, and rejecting 0.5% of items; then three rounds of catalog changes and the minute
           jobs under the same faults. The destination then heals and the minute jobs run until
           nothing is pending (`settle`: backoffs made due between rounds, as the minutes would).
           Reconciliation compares what the destination holds with a fresh build of the source.
  backlog  The products feed synced, then one plain SQL UPDATE of every product (name and
           updated_at, in transactions of 100,000 rows, as an application's mass update does):
           the triggers log one changelog row per product. `python -m worker cron:run
           indexer_update_all_views` drains it; its RSS is sampled as the drain advances.
  api      `python -m worker api` on a synced catalog with a history of runs and errors, and
           `--clients` concurrent clients for `--seconds`, each sending its next request when the
           previous one is answered: 40% job_sync_status (following its cursor half the time),
           20% integrations, 20% sync/runs, 20% sync/errors.
  beats    Two `celery -A worker beat` and two `celery -A worker worker` processes on Redis and
           PostgreSQL for `--minutes` ticks of the default crons, while the application changes
           products every 10 s; then what the fleet left pending, and a reconciliation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from config.settings import ENV_VARIABLES
from feeds.state import indexer_state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.export import Destination  # noqa: E402

POSTGRES_URL = os.environ.get(
    "FEEDSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCENARIOS = ("faults", "backlog", "api", "beats")
FULL = {"faults": 50_000, "backlog": 1_000_000, "seconds": 60, "minutes": 3}
QUICK = {"faults": 5_000, "backlog": 50_000, "seconds": 10, "minutes": 1}
# Feedsync's settings, read from the environment: unset here, so that every process runs on the
# defaults whatever the shell exports (the scenarios set what they need and say so).
SETTINGS_VARIABLES = ENV_VARIABLES
DEFAULT_TIMEOUT_S = 30.0  # EXPORT_TIMEOUT_S
PRODUCTS_INDEXER = "catalog_data_exporter_products"
TOUCH_CHUNK = 100_000
PARTIAL_ROUNDS = 3  # rounds of changes and minute jobs while the destination still fails
API_PRODUCTS = 2_000
API_HISTORY_ROUNDS = 30  # changes + partial syncs before the load: runs and errors to list
API_KEYS_PER_CLIENT = 3
API_MIX = (("job_sync_status", 40), ("integrations", 20), ("runs", 20), ("errors", 20))
BEATS_PRODUCTS = 2_000
CHANGE_EVERY_S = 10.0

Figures = dict[str, Any]


def fault_arguments(timeout_s: float) -> list[str]:
    """The faulty destination's command line: what the `faults` scenario injects."""
    return [
        "--keep-items",
        "--seed", "7",
        "--fail-ratio", "0.10",
        "--rate-limit-ratio", "0.05", "--retry-after", "1", "--retry-after-form", "both",
        "--slow-ratio", "0.01", "--slow-seconds", f"{timeout_s + 1:g}",
        "--malformed-ratio", "0.03",
        "--reject-ratio", "0.005",
    ]  # fmt: skip


def fault_text(timeout_s: float) -> str:
    return (
        f"10% of requests 503; 5% 429 with Retry-After 1 s (delay-seconds and HTTP date in turn); "
        f"1% answered after {timeout_s + 1:g} s, past the {timeout_s:g} s timeout (applied all the "
        f"same); 3% a 200 cut short; 0.5% of items rejected (VALIDATION_RULE)"
    )


# -- shared plumbing -------------------------------------------------------------------------


@contextmanager
def database(kind: str, name: str, workdir: Path) -> Iterator[str]:
    """A database URL of the scenario's own: a PostgreSQL schema dropped afterwards, or SQLite."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"feedsync_bench_resilience_{name}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def destination(*arguments: str) -> Iterator[Destination]:
    server = Destination(*arguments)
    try:
        yield server
    finally:
        server.stop()


def environment(database_url: str, export_url: str, **extra: str) -> dict[str, str]:
    """The environment of every Feedsync process of a scenario: the defaults, and these."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(
        PYTHONPATH=os.pathsep.join(path),
        DATABASE_URL=database_url,
        EXPORT_URL=export_url,
        LOG_FORMAT="json",
        **extra,
    )
    return env


def open_ctx(env: dict[str, str]) -> Any:
    from config.context import open_context
    from config.settings import load_settings

    return open_context(load_settings({k: v for k, v in env.items() if k in SETTINGS_VARIABLES}))


def cli(env: dict[str, str], workdir: Path, *argv: str) -> tuple[float, list[str]]:
    """Run `python -m worker ARGV`; its seconds and stdout lines. Its logs go to a file."""
    started = time.monotonic()
    with (workdir / "cli.log").open("a") as log:
        done = subprocess.run(
            [sys.executable, "-m", "worker", *argv],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(
            f"`{' '.join(argv)}` failed:\n{done.stdout[-2000:]}{tail(workdir / 'cli.log')}"
        )
    return time.monotonic() - started, done.stdout.splitlines()


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def quiet_logs() -> None:
    """This process's own Feedsync logs: only problems, on stderr."""
    from worker import logs

    logs.configure("json", logging.ERROR)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def get_json(url: str) -> Any:
    return httpx.get(url, timeout=120).json()


def wait_answered(server_url: str, timeout_s: float = 120) -> None:
    """Until the destination has answered every request it received (late ones included)."""
    deadline = time.monotonic() + timeout_s
    while get_json(f"{server_url}/_stats")["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)


class Holdings:
    """What the destination process holds per feed (`GET /_holdings`), for reconcile()."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._duplicates: dict[str, int] = {}

    def __call__(self, feed: str) -> dict[str, tuple[str, bool]]:
        answer = get_json(f"{self.url}/_holdings?feed={feed}")
        self._duplicates[feed] = int(answer["duplicates"])
        return {item: (pair[0], bool(pair[1])) for item, pair in answer["items"].items()}

    def duplicates(self, feed: str) -> int:
        if feed not in self._duplicates:
            self(feed)
        return self._duplicates[feed]


def reconciliation(ctx: Any, server_url: str) -> Figures:
    from worker.testing.reconcile import reconcile

    holdings = Holdings(server_url)
    result = reconcile(ctx, holdings, holdings.duplicates)
    waiting = Counter(
        reason.split(":")[0] for f in result.feeds.values() for reason in f.waiting.values()
    )
    return {
        "ok": result.ok,
        "problems": result.problems(),
        "duplicates": result.duplicates,
        "live": sum(f.live for f in result.feeds.values()),
        "matched": sum(f.matched for f in result.feeds.values()),
        "deleted": sum(f.deleted for f in result.feeds.values()),
        "waiting": dict(waiting),
        "running": len(result.running),
    }


def verdict_text(r: Figures) -> str:
    waiting = ", ".join(f"{n:,} {why}" for why, n in r["waiting"].items())
    held = (
        f"{r['matched']:,} of {r['live']:,} live items held as built, {r['deleted']:,} deletions held"
        + (f", waiting with an open sync error: {waiting}" if waiting else "")
    )
    if r["ok"]:
        return f"ok, nothing lost: {held}"
    return f"NOT OK: {held}; " + " | ".join(r["problems"])


def run_jobs(ctx: Any, jobs: list[str], failed: Counter[str]) -> None:
    """Run each job once in this process, as a minute of the embedded runner would."""
    from worker.jobs import JobFailed, run_job

    for job in jobs:
        try:
            run_job(ctx, job)
        except JobFailed:
            failed[job] += 1  # some feed's run did not succeed: recorded, retried by the jobs


def minute_jobs(ctx: Any) -> list[str]:
    from feeds.schedule import resend_job
    from worker.testing.converge import MINUTE_JOBS

    return [*MINUTE_JOBS, *(resend_job(name) for name in ctx.registry.names())]


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def header(name: str, text: str) -> None:
    print(f"\n{name:<8} {text}", flush=True)


def row(label: str, text: str) -> None:
    print(f"  {label:<18} {text}", flush=True)


# -- faults ----------------------------------------------------------------------------------


def faults_phase(products: int, server_url: str) -> Figures:
    """The `faults` scenario's work, in a child process (its reindex processes log to its file)."""
    from feeds.commerce import demo
    from worker.testing.converge import pending, settle, time_passes

    quiet_logs()
    ctx = open_ctx(dict(os.environ))
    failed: Counter[str] = Counter()
    try:
        demo.seed(ctx.source, products, 1)
        started = time.monotonic()
        run_jobs(ctx, ["indexer_reindex_all_invalid"], failed)
        # A late answer's items land after the client gave up on it: let them land before the
        # catalog changes, so that an old version never arrives after a newer one.
        wait_answered(server_url)
        full_s = time.monotonic() - started
        changed = deleted = 0
        for n in range(PARTIAL_ROUNDS):
            affected = demo.change(
                ctx.source, max(1, products // 100), max(1, products // 1000), seed=n
            )
            changed += len(affected["updated"])
            deleted += len(affected["deleted"])
            run_jobs(ctx, minute_jobs(ctx), failed)
            wait_answered(server_url)
            time_passes(ctx)
        faulted_s = time.monotonic() - started
        left = pending(ctx)
        httpx.post(f"{server_url}/_heal", timeout=30).raise_for_status()
        settled = settle(ctx)
        return {
            "full_s": full_s,
            "faulted_s": faulted_s,
            "changed": changed,
            "deleted": deleted,
            "left": left,
            "failed_jobs": dict(failed),
            "settle_rounds": settled.rounds,
            "converge_s": settled.seconds,
            "total_s": time.monotonic() - started,
            "reconciliation": reconciliation(ctx, server_url),
        }
    finally:
        ctx.close()


def faults(args: argparse.Namespace, workdir: Path) -> Figures:
    products = sizes(args, "faults")
    timeout_s = args.timeout or DEFAULT_TIMEOUT_S
    with (
        database(args.db, "faults", workdir) as url,
        destination(*fault_arguments(timeout_s)) as server,
    ):
        env = environment(url, server.url)
        setting = "the default"
        if args.timeout:
            env["EXPORT_TIMEOUT_S"] = f"{args.timeout:g}"
            setting = "set by --timeout, so that a late answer costs less wall time"
        header(
            "faults",
            f"{args.db}, {products:,} products (the sample catalog's six feeds), "
            f"EXPORT_TIMEOUT_S {timeout_s:g} ({setting}), {os.cpu_count()} cores",
        )
        row("faults injected", fault_text(timeout_s))
        figures = child_phase("faults", args, env, workdir, products, server.url)
        stats = server.stats()
    figures["stats"] = stats
    figures["ok"] = bool(figures["settle_rounds"]) and figures["reconciliation"]["ok"]
    show_faults(figures)
    return figures


def show_faults(f: Figures) -> None:
    left = ", ".join(f"{kind} {n:,}" for kind, n in f["left"].items()) or "nothing"
    failed = sum(f["failed_jobs"].values())
    row(
        "under faults",
        f"full sync of ~{f['reconciliation']['live']:,} items (indexer_reindex_all_invalid) "
        f"{f['full_s']:.1f} s; then {PARTIAL_ROUNDS} rounds of changes ({f['changed']:,} products "
        f"updated, {f['deleted']:,} deleted in all) and the minute jobs, "
        f"{f['faulted_s'] - f['full_s']:.1f} s; {plural(failed, 'job run')} where a feed's run "
        f"failed; left to do: {left}",
    )
    if f["settle_rounds"]:
        row(
            "healed",
            f"converged in {f['converge_s']:.1f} s: {plural(f['settle_rounds'], 'round')} of the "
            "minute jobs, "
            f"backoffs made due between rounds (settle()); {f['total_s']:.1f} s from the first request",
        )
    else:
        row("healed", f"NOT CONVERGED after {f['converge_s']:.1f} s of rounds of the minute jobs")
    stats = f["stats"]
    statuses = ", ".join(f"{code} {n:,}" for code, n in sorted(stats["statuses"].items()))
    injected = stats.get("injected", {})
    row(
        "requests",
        f"{stats['requests']:,} ({statuses}); of the 200s {injected.get('malformed', 0):,} cut "
        f"short; {injected.get('slow', 0):,} answered late (carrying "
        f"{injected.get('late_items', 0):,} items); {injected.get('rejected', 0):,} items rejected",
    )
    r = f["reconciliation"]
    row(
        "duplicates",
        f"{r['duplicates']:,} versions delivered more than once (the items of late answers: "
        "applied by the destination, then resent, as their answer never reached Feedsync)",
    )
    row("reconciliation", verdict_text(r))


# -- backlog ---------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float  # since the drain's command started
    done: float  # share of the backlog drained
    rss_mb: float


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB (0 once it has gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def backlog(args: argparse.Namespace, workdir: Path) -> Figures:
    from sqlalchemy import text

    from feeds.tracking import changelog

    products = sizes(args, "backlog")
    with database(args.db, "backlog", workdir) as url, destination() as server:
        env = environment(url, server.url)
        header(
            "backlog",
            f"{args.db}, {products:,} products, products feed, HTTP test destination, "
            f"{os.cpu_count()} cores",
        )
        seed_s, _ = cli(env, workdir, "demo:seed", "--products", str(products))
        full_s, _ = cli(env, workdir, "indexer:reindex", PRODUCTS_INDEXER)
        row("set-up", f"seeded in {seed_s:.1f} s; products feed full sync in {full_s:.1f} s")
        ctx = open_ctx(env)
        try:
            feed = ctx.registry.get("products")
            started = time.monotonic()
            now = datetime.now(UTC).replace(tzinfo=None)
            for lo in range(0, products, TOUCH_CHUNK):
                with ctx.source.begin() as conn:
                    conn.execute(
                        text(
                            "UPDATE products SET name = name || ' +', updated_at = :now "
                            "WHERE id > :lo AND id <= :hi"
                        ),
                        {"now": now, "lo": lo, "hi": lo + TOUCH_CHUNK},
                    )
            touch_s = time.monotonic() - started
            with ctx.db.connect() as conn:
                start = indexer_state.get_state(conn, feed.indexer_id).version_id
            with ctx.source.connect() as src:
                upto = changelog.current_version(src, feed)
                rows = upto - start
                entities = changelog.backlog(src, feed, start)
            row(
                "backlog",
                f"{rows:,} changelog rows ({entities:,} products) logged by the triggers of plain "
                f"SQL UPDATEs of every product ({TOUCH_CHUNK:,} per transaction), in "
                f"{touch_s:.1f} s: the rows production writes, and documents that really changed, "
                "so every item is sent",
            )
            before = server.stats()["deliveries"].get("products", 0)
            figures = drain(ctx, env, workdir, feed.indexer_id, start, upto)
        finally:
            ctx.close()
        stats = server.stats()
        figures.update(
            rows=rows,
            entities=entities,
            requests=stats["requests"],
            deliveries=stats["deliveries"].get("products", 0) - before,
            held=stats["accepted"].get("products", 0),
        )
    # Without faults every changed product is sent once: as many deliveries as products synced.
    figures["ok"] = figures["updated"] == entities == figures["deliveries"]
    show_backlog(figures)
    return figures


def drain(
    ctx: Any, env: dict[str, str], workdir: Path, indexer: str, start: int, upto: int
) -> Figures:
    """`cron:run indexer_update_all_views` in a child process, its RSS sampled as it drains."""

    samples: list[Sample] = []
    started = time.monotonic()
    with (workdir / "drain.log").open("w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "worker", "cron:run", "indexer_update_all_views"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        while True:
            # wait4, not poll(): the child's own peak RSS comes with its exit status.
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            rss = tree_rss_mb(child.pid)
            with ctx.db.connect() as conn:
                version = indexer_state.get_state(conn, indexer).version_id
            if rss:
                done = (version - start) / max(1, upto - start)
                samples.append(Sample(time.monotonic() - started, done, rss))
            time.sleep(0.25)
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.stdout is not None
        output = child.stdout.read()
    seconds = time.monotonic() - started
    if child.returncode:
        raise SystemExit(f"the drain failed:\n{output}{tail(workdir / 'drain.log')}")
    summary = next((line for line in output.splitlines() if line.startswith("products:")), "")
    updated = int(m.group(1)) if (m := re.search(r"updated (\d+)", summary)) else 0
    job_s = float(m.group(1)) if (m := re.search(r" in ([\d.]+) s", summary)) else seconds
    return {
        "seconds": seconds,
        "job_s": job_s,
        "updated": updated,
        "summary": summary,
        "samples": samples,
        "peak_rss_mb": max((s.rss_mb for s in samples), default=0.0),
        "maxrss_mb": usage.ru_maxrss / 1024,
    }


def reached(samples: list[Sample], share: float) -> Sample | None:
    """The first sample at or past `share` of the backlog (the last one for 100%)."""
    if share >= 1:
        return samples[-1] if samples else None
    return next((s for s in samples if s.done >= share), None)


def rss_at(samples: list[Sample], share: float) -> float:
    sample = reached(samples, share)
    return sample.rss_mb if sample else 0.0


def rates(samples: list[Sample], items: int) -> str:
    """Items/s between 10%, 50% and 100% of the backlog: a drain that slows as it goes shows here."""
    marks = [reached(samples, share) for share in (0.1, 0.5, 1.0)]
    parts = []
    for a, b in zip(marks, marks[1:], strict=False):
        if a and b and b.seconds > a.seconds:
            rate = (b.done - a.done) * items / (b.seconds - a.seconds)
            parts.append(f"{a.done:.0%}-{b.done:.0%} {rate:,.0f} items/s")
    return ", ".join(parts)


def show_backlog(f: Figures) -> None:
    samples = f["samples"]
    rate = f["updated"] / f["job_s"] if f["job_s"] else 0.0
    row(
        "drain",
        f"{f['job_s']:.1f} s ({f['seconds']:.1f} s with the command's start), {rate:,.0f} items/s; "
        f"{f['summary'].split(' in ')[0]}; {f['requests']:,} destination requests in all",
    )
    row("drain rate", rates(samples, f["updated"]))
    row(
        "delivered",
        f"{f['deliveries']:,} item deliveries accepted during the drain for {f['updated']:,} "
        f"products synced: {f['deliveries'] - f['updated']:,} duplicates, "
        f"{f['entities'] - f['updated']:,} missing; the destination holds {f['held']:,} products",
    )
    points = ", ".join(f"{share:.0%} {rss_at(samples, share):,.0f} MB" for share in (0.1, 0.5, 1.0))
    row(
        "memory",
        f"RSS at {points} of the backlog; peak {f['peak_rss_mb']:,.0f} MB sampled "
        f"({len(samples)} samples every 0.25 s), {f['maxrss_mb']:,.0f} MB by the kernel's count",
    )


# -- api -------------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    status: int  # 0: no answer (timeout, connection error)
    seconds: float
    error: str = ""  # why there was no answer


@dataclass
class Client:
    keys: list[str]
    rng: random.Random
    answers: list[Answer] = field(default_factory=list)
    next_page: dict[str, str] = field(default_factory=dict)  # integration → its next cursor URL
    turn: int = 0

    def key(self) -> str:
        self.turn += 1
        return self.keys[self.turn % len(self.keys)]


def api(args: argparse.Namespace, workdir: Path) -> Figures:
    from feeds.commerce import demo
    from worker.api.apikeys import Permission, create_key

    seconds = sizes(args, "seconds")
    clients = args.clients
    # Rejections give sync/errors something to list.
    with (
        database(args.db, "api", workdir) as url,
        destination("--reject-ratio", "0.02", "--seed", "7") as server,
    ):
        env = environment(url, server.url)
        header(
            "api",
            f"{args.db}, `python -m worker api` (one process, defaults), {clients} clients for "
            f"{seconds:g} s, {os.cpu_count()} cores",
        )
        ctx = open_ctx(env)
        try:
            demo.seed(ctx.source, API_PRODUCTS, 1)
            failed: Counter[str] = Counter()
            run_jobs(ctx, ["indexer_reindex_all_invalid"], failed)
            for n in range(API_HISTORY_ROUNDS):
                demo.change(ctx.source, 20, 1, seed=n)
                run_jobs(ctx, ["indexer_update_all_views"], failed)
            permissions = [
                Permission.INTEGRATION_LIST,
                Permission.INTEGRATION_JOB_STATUS,
                Permission.SYNC_ADMIN,
            ]
            keys = [
                [
                    create_key(ctx.db, f"bench-{c}-{k}", permissions)[1]
                    for k in range(API_KEYS_PER_CLIENT)
                ]
                for c in range(clients)
            ]
            history = history_counts(ctx)
        finally:
            ctx.close()
        row(
            "data",
            f"{API_PRODUCTS:,} products synced, {history['runs']:,} sync runs, "
            f"{history['errors']:,} sync errors; {API_KEYS_PER_CLIENT} keys per client, so that "
            f"the per-key limits (50/min list, 100/min job status) leave room; 429s counted apart",
        )
        with api_process(env, workdir) as (base, pid):
            cpu_before, own_before = cpu_seconds(pid), own_cpu_seconds()
            answers, elapsed = asyncio.run(load(base, keys, seconds))
            api_cpu, client_cpu = cpu_seconds(pid) - cpu_before, own_cpu_seconds() - own_before
    figures = {
        "answers": answers,
        "seconds": elapsed,
        "api_cpu_s": api_cpu,
        "client_cpu_s": client_cpu,
        "ok": not any(a.status >= 500 or a.status == 0 for a in answers),
    }
    show_api(figures)
    return figures


def history_counts(ctx: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from feeds.state.tables import sync_errors, sync_runs

    with ctx.db.connect() as conn:
        return {
            "runs": int(conn.scalar(select(func.count()).select_from(sync_runs)) or 0),
            "errors": int(conn.scalar(select(func.count()).select_from(sync_errors)) or 0),
        }


@contextmanager
def api_process(env: dict[str, str], workdir: Path) -> Iterator[tuple[str, int]]:
    """`python -m worker api --port 0`, up; its base URL and pid."""
    log = (workdir / "api.log").open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "worker", "api", "--port", "0"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if not match:
            raise SystemExit(f"the API did not start: {line}{tail(workdir / 'api.log')}")
        base = match.group(1)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the API is not healthy")
            time.sleep(0.2)
        yield base, child.pid
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()


def own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(base: str, keys: list[list[str]], seconds: float) -> tuple[list[Answer], float]:
    """Every client in a closed loop until `seconds` have passed; every answer timed.

    Each client has its own connection, as separate API consumers do: a shared pool would leave
    some connections idle past the server's keep-alive timeout (uvicorn: 5 s), and a request sent
    on one just as the server closes it fails without an answer, a client-side race."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        first = await http.get(
            "/cdi/integrations", headers={"Authorization": f"Bearer {keys[0][0]}"}
        )
    integrations = [i["integration_id"] for i in first.json()["results"]]
    kinds = [kind for kind, _ in API_MIX]
    weights = [weight for _, weight in API_MIX]
    clients = [Client(k, random.Random(n)) for n, k in enumerate(keys)]
    started = time.monotonic()
    deadline = started + seconds

    async def run(client: Client) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            while time.monotonic() < deadline:
                kind = client.rng.choices(kinds, weights)[0]
                url = request_url(client, kind, integrations)
                headers = {"Authorization": f"Bearer {client.key()}"}
                sent, error = time.monotonic(), ""
                try:
                    response = await http.get(url, headers=headers)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"
                client.answers.append(Answer(kind, status, time.monotonic() - sent, error))
                if kind == "job_sync_status" and status == 200:
                    remember_next(client, url, response)

    await asyncio.gather(*(run(client) for client in clients))
    elapsed = time.monotonic() - started
    return [answer for client in clients for answer in client.answers], elapsed


def request_url(client: Client, kind: str, integrations: list[str]) -> str:
    rng = client.rng
    if kind == "job_sync_status":
        integration = rng.choice(integrations)
        following = client.next_page.get(integration)
        if following and rng.random() < 0.5:
            return following
        return f"/cdi/integrations/{integration}/job_sync_status"
    if kind == "integrations":
        return "/cdi/integrations"
    if kind == "runs":
        return rng.choice(
            ["/sync/runs", "/sync/runs?feed=products", "/sync/runs?status=partial&sort=end"]
        )
    return rng.choice(["/sync/errors", "/sync/errors?category=custom_code&limit=20"])


def remember_next(client: Client, url: str, response: httpx.Response) -> None:
    integration = url.split("/")[3]
    match = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("link", ""))
    if match:
        client.next_page[integration] = str(httpx.URL(match.group(1)).raw_path.decode())
    else:
        client.next_page.pop(integration, None)


def show_api(f: Figures) -> None:
    answers: list[Answer] = f["answers"]
    statuses = Counter(a.status for a in answers)
    served = [a.seconds * 1000 for a in answers if 200 <= a.status < 300]
    limited = [a.seconds * 1000 for a in answers if a.status == 429]
    errors = sum(n for status, n in statuses.items() if status >= 500 or status == 0)
    text = ", ".join(f"{status or 'no answer'} {n:,}" for status, n in sorted(statuses.items()))
    row(
        "answers",
        f"{len(answers):,} in {f['seconds']:.1f} s, {len(answers) / f['seconds']:,.0f} requests/s "
        f"({text}); 5xx or no answer: {errors}",
    )
    failures = Counter(f"{a.error} after {a.seconds:.1f} s" for a in answers if a.status == 0)
    for failure, n in failures.most_common(5):
        row("  no answer", f"{n} x {failure}")
    row(
        "latency 2xx",
        f"p50 {percentile(served, 50):.1f} ms, p99 {percentile(served, 99):.1f} ms, "
        f"max {max(served, default=0):.1f} ms"
        + (f"; 429: {len(limited):,}, p50 {percentile(limited, 50):.1f} ms" if limited else ""),
    )
    for kind, _ in API_MIX:
        mine = [a.seconds * 1000 for a in answers if a.kind == kind and 200 <= a.status < 300]
        if mine:
            row(
                f"  {kind}",
                f"{len(mine):,} answered 2xx, p50 {percentile(mine, 50):.1f} ms, "
                f"p99 {percentile(mine, 99):.1f} ms",
            )
    row(
        "cpu",
        f"API process {f['api_cpu_s']:.1f} s, load clients {f['client_cpu_s']:.1f} s "
        f"(the same {os.cpu_count()} cores)",
    )


# -- beats -----------------------------------------------------------------------------------


class Fleet:
    """Celery processes, each in its own process group, with their logs."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *argv],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for name in self.procs:
            self.stop(name)


def beats(args: argparse.Namespace, workdir: Path) -> Figures:
    from redis import Redis

    from config.settings import load_settings
    from feeds.commerce import demo
    from feeds.history import job_runs
    from worker.app import create_app
    from worker.testing.converge import pending, settle

    minutes = sizes(args, "minutes")
    redis = Redis.from_url(args.redis)
    redis.flushdb()
    with database("postgresql", "beats", workdir) as url, destination("--keep-items") as server:
        env = environment(url, server.url, BROKER_URL=args.redis)
        header(
            "beats",
            f"postgresql + Redis ({args.redis}), 2 beats + 2 workers (Celery's default "
            f"concurrency: one pool process per core), default crons, {minutes} minute ticks, "
            f"{BEATS_PRODUCTS:,} products changed every {CHANGE_EVERY_S:g} s",
        )
        ctx = open_ctx(env)
        fleet = Fleet(env, workdir)
        app = create_app(load_settings({k: v for k, v in env.items() if k in SETTINGS_VARIABLES}))
        changes = 0
        try:
            demo.seed(ctx.source, BEATS_PRODUCTS, 1)
            for n in (1, 2):
                fleet.start(f"worker{n}", "worker", "--loglevel", "INFO", "-n", f"bench{n}@%h")
            wait_for(lambda: len(app.control.ping(timeout=1.0) or []) >= 2, 120, "the workers")
            for n in (1, 2):
                fleet.start(f"beat{n}", "beat", "--loglevel", "INFO")
            started = datetime.now(UTC)
            first = started.replace(second=0, microsecond=0) + timedelta(minutes=1)
            last = first + timedelta(minutes=minutes - 1)  # the last tick of the run
            # The application changes the catalog until shortly before the last tick.
            n = 0
            while datetime.now(UTC) < last - timedelta(seconds=5):
                affected = demo.change(ctx.source, 5, 1, seed=1000 + n)
                changes += len(affected["updated"]) + len(affected["deleted"])
                n += 1
                time.sleep(CHANGE_EVERY_S)
            sleep_until(last + timedelta(seconds=5))
            fleet.stop("beat1")
            fleet.stop("beat2")
            wait_for(lambda: idle(app), 600, "the last tick's tasks")
            fleet.stop("worker1")
            fleet.stop("worker2")
            runs = job_runs.all_runs(ctx.db)
            left = pending(ctx)
            settled = settle(ctx)
            result = reconciliation(ctx, server.url)
            figures = beat_figures(fleet, runs, first, last)
            figures.update(
                changes=changes,
                left=left,
                settle_rounds=settled.rounds,
                reconciliation=result,
                ok=not figures["twice"] and not figures["overlaps"] and result["ok"],
            )
        finally:
            fleet.stop_all()
            app.close()
            ctx.close()
            redis.flushdb()
    show_beats(figures)
    return figures


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def idle(app: Any) -> bool:
    """No task waits in the queue or runs on a worker."""
    inspect = app.control.inspect(timeout=1.0)
    busy = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
    with app.connection_for_read() as conn:
        queued = conn.default_channel.client.llen("celery")
    return not queued and not any(busy)


def json_events(log: str) -> Iterator[dict[str, Any]]:
    """The JSON events of a log whose pool processes share one file: two events may share a line."""
    decoder = json.JSONDecoder()
    for line in log.splitlines():
        at = line.find("{")
        while at != -1:
            try:
                event, end = decoder.raw_decode(line, at)
            except ValueError:
                break
            if isinstance(event, dict):
                yield event
            at = line.find("{", end)


def beat_figures(fleet: Fleet, runs: list[Any], first: datetime, last: datetime) -> Figures:
    from feeds.history.job_runs import JobStatus

    sent = sum(fleet.log(b).count("Sending due task") for b in ("beat1", "beat2"))
    reasons: Counter[str] = Counter()
    for name in ("worker1", "worker2"):
        for event in json_events(fleet.log(name)):
            if event.get("event") == "job.skipped":
                reasons[str(event.get("reason", ""))] += 1
    ran = [r for r in runs if r.status is not JobStatus.SKIPPED]
    per_tick = Counter((r.job, r.tick) for r in ran if r.tick is not None)
    overlaps = 0
    for job in {r.job for r in ran}:
        mine = sorted((r for r in ran if r.job == job), key=lambda r: r.started_at)
        for before, after in zip(mine, mine[1:], strict=False):
            if before.finished_at is None or before.finished_at > after.started_at:
                overlaps += 1
    ticks = sorted({r.tick for r in runs if r.tick is not None})
    return {
        "ticks": len(ticks),
        "expected_ticks": int((last - first).total_seconds() // 60) + 1,
        "sent": sent,
        "ran": len(ran),
        "statuses": dict(Counter(r.status.value for r in runs)),
        "jobs": len({r.job for r in ran}),
        "twice": sum(1 for n in per_tick.values() if n > 1),
        "max_per_tick": max(per_tick.values(), default=0),
        "overlaps": overlaps,
        "skipped": dict(reasons),
        "no_tick": sum(1 for r in ran if r.tick is None),
        "failures": [
            f"{r.job}: {(r.summary or '').splitlines()[-1:]}"
            for r in ran
            if r.status is not JobStatus.SUCCESS
        ],
    }


def show_beats(f: Figures) -> None:
    statuses = ", ".join(f"{s} {n}" for s, n in sorted(f["statuses"].items()))
    skipped = ", ".join(f"{why!r} {n}" for why, n in sorted(f["skipped"].items())) or "none"
    row(
        "ticks",
        f"{plural(f['ticks'], 'tick')} with a run recorded, of {f['expected_ticks']} minute "
        f"ticks in the run; "
        f"{f['sent']} tasks sent by the two beats",
    )
    row("job runs", f"{f['ran']} runs of {f['jobs']} jobs; job_runs rows by status: {statuses}")
    for failure in f["failures"]:
        row("  not a success", failure)
    row("skipped tasks", skipped)
    row(
        "duplicates",
        f"{f['twice']} (job, tick) pairs run more than once (most runs for one tick: "
        f"{f['max_per_tick']}); {f['overlaps']} overlapping runs of a job",
    )
    left = ", ".join(f"{kind} {n:,}" for kind, n in f["left"].items()) or "nothing"
    r = f["reconciliation"]
    row(
        "after the run",
        f"{f['changes']:,} products changed; left pending when the fleet stopped: {left}; "
        f"{r['duplicates']:,} versions delivered more than once",
    )
    row("reconciliation", verdict_text(r))


# -- the parent ------------------------------------------------------------------------------


def sizes(args: argparse.Namespace, name: str) -> Any:
    """The size a scenario runs at: given on the command line, else quick or full."""
    given = {
        "faults": args.products,
        "backlog": args.products,
        "seconds": args.seconds,
        "minutes": args.minutes,
    }[name]
    if given is not None:
        return given
    return (QUICK if args.quick else FULL)[name]


def child_phase(
    name: str,
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    products: int,
    server_url: str,
) -> Figures:
    """Run a scenario's work in a child process: its figures, and its logs in a file."""
    out, log_path = workdir / f"{name}.json", workdir / f"{name}.log"
    command = [sys.executable, __file__, "--phase", name, "--products", str(products)]
    command += ["--server", server_url, "--out", str(out)]
    with log_path.open("w") as log:
        done = subprocess.run(command, env=env, cwd=workdir, stdout=log, stderr=log, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {name} scenario failed:\n{tail(log_path)}")
    figures: Figures = json.loads(out.read_text())
    return figures


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], Figures]] = {
    "faults": faults,
    "backlog": backlog,
    "api": api,
    "beats": beats,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"of {', '.join(SCENARIOS)}; default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--products", type=int, help=f"faults {FULL['faults']:,}; backlog {FULL['backlog']:,}"
    )
    parser.add_argument("--seconds", type=float, help=f"api (default {FULL['seconds']})")
    parser.add_argument("--clients", type=int, default=50, help="api (default 50)")
    parser.add_argument("--minutes", type=int, help=f"beats (default {FULL['minutes']})")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/3", help="beats; flushed before and after"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="faults: EXPORT_TIMEOUT_S (default: Feedsync's 30 s); late answers come 1 s after it",
    )
    parser.add_argument("--logs", help="keep every process's log in DIR/<scenario>/")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        figures = faults_phase(args.products, args.server)
        Path(args.out).write_text(json.dumps(figures, default=str))
        return 0
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}; accepted: {', '.join(SCENARIOS)}")
    quiet_logs()
    chosen = [name for name in SCENARIOS if name in args.scenarios] or list(SCENARIOS)
    print(
        f"# Feedsync resilience benchmark: {', '.join(chosen)}"
        + (" (--quick sizes)" if args.quick else "")
        + f"; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="feedsync-resilience-") as tmp:
        for name in chosen:
            workdir = Path(args.logs or tmp) / name
            workdir.mkdir(parents=True, exist_ok=True)
            verdicts[name] = bool(RUNNERS[name](args, workdir)["ok"])
    # Only what must hold: nothing lost, nothing run twice, no 5xx; the figures are for people.
    print(
        "\nverdict: " + ", ".join(f"{n} {'ok' if ok else 'FAILED'}" for n, ok in verdicts.items())
    )
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
