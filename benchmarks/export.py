"""Export benchmark: full sync of the products feed to the test destination over HTTP, and its ceiling.

    python benchmarks/export.py --db sqlite --products 1000000
    python benchmarks/export.py --db postgresql --products 1000000 [--phases full,ceiling]

The test destination (`python -m worker.testing.destination_server`) runs as a separate process for the
whole run. Each phase runs in a child process of its own, so the peak RSS printed is that phase's
alone (the largest process of the phase: its reindex workers included). Phases, in order:

  seed      the sample catalog (always run)
  full      first full sync (`indexer:reindex` path: every item new) to the destination
  resync    `saas:resync` of the same feed: every item built again and resent
  legacy    legacy-mode collection into an emptied feed table (payloads kept, nothing sent)
  ceiling   the same items in the same batches, read back from the legacy payloads, encoded and
            gzipped as the client does before the timer; then only a loop posting them to the same
            server, with one thread and with as many threads as the pipeline sends with
  fault     a second destination failing 20% of requests and rejecting 1% of items: full sync into
            an emptied feed table, then `resend_failed` rounds until every item is accepted or
            rejected (no retryable item with a next attempt left)

The feed table's bytes per item are measured after `full` (immediate mode) and after `legacy`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "FEEDSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = "feedsync_bench_export"
FEED = "products"
PHASES = ("seed", "full", "resync", "legacy", "ceiling", "fault")
FAULTS = ("--fail-ratio", "0.2", "--reject-ratio", "0.01", "--seed", "7")
# Resends come quickly in the fault phase: the default backoff starts at a minute; here at 0.5 s,
# and the resend job, a one-minute cron in production, starts a round every 0.5 s (both / 120).
FAULT_RETRY = "[retry]\nbackoff_base_s = 0.5\nbackoff_max_s = 2\n"
RESEND_EVERY_S = 0.5
TARGET_RATE = 33_000  # items/s, on PostgreSQL
FAULT_DEADLINE_S = 900  # the fault phase gives up waiting for the resends after this long
TARGET_SHARE = 0.5
TARGET_RSS_MB = 300

Figures = dict[str, Any]
TICKS = os.sysconf("SC_CLK_TCK")


# -- phases (run in a child process) ------------------------------------------------------------


def phase(name: str, products: int, threads: int) -> Figures:
    """Run one phase in this process and return its figures."""
    from config.context import open_context
    from config.settings import load_settings

    ctx = open_context(load_settings())
    try:
        return PHASE_FUNCTIONS[name](ctx, products, threads)
    finally:
        ctx.close()


def _seed(ctx: Any, products: int, threads: int) -> Figures:
    from feeds.commerce import demo
    from feeds.pipeline import indexer

    started = time.perf_counter()
    demo.seed(ctx.source, products, 1)
    indexer.ensure_subscriptions(ctx)
    return {"seconds": time.perf_counter() - started}


def _full(ctx: Any, products: int, threads: int) -> Figures:
    from feeds.pipeline import indexer
    from feeds.pipeline.run import RunOptions

    feed = ctx.registry.get(FEED)
    started = time.perf_counter()
    outcome = indexer.reindex(ctx, feed, options=RunOptions(send=True, threads=threads))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        **_counts(outcome.counts),
        **_setup(ctx, feed, threads),
        **_table_size(ctx),
    }


def _resync(ctx: Any, products: int, threads: int) -> Figures:
    from feeds.pipeline.resync import ResyncRequest, resync

    feed = ctx.registry.get(FEED)
    started = time.perf_counter()
    outcome = resync(ctx, feed, ResyncRequest(threads=threads))
    return {
        "seconds": time.perf_counter() - started,
        **_counts(outcome.counts),
        **_setup(ctx, feed, threads),
    }


def _legacy(ctx: Any, products: int, threads: int) -> Figures:
    from feeds.pipeline import indexer
    from feeds.pipeline.run import collect_only

    feed = ctx.registry.get(FEED)
    assert collect_only(ctx, feed), "the legacy phase needs export_mode = legacy"
    _empty_feed_table(ctx)
    started = time.perf_counter()
    outcome = indexer.reindex(ctx, feed)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, **_counts(outcome.counts), **_table_size(ctx)}


def _ceiling(ctx: Any, products: int, threads: int) -> Figures:
    """Post the legacy-collected items, pre-encoded as the HTTP client encodes them, in a bare loop."""
    import gzip
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from sqlalchemy import select

    from feeds.export.http import GZIP_MIN_BYTES
    from feeds.export.protocol import encode_batch, idempotency_key
    from feeds.pipeline.diff import Change, FeedItem
    from feeds.pipeline.indexer import reindex_processes
    from feeds.state.tables import items

    feed = ctx.registry.get(FEED)
    batch_size = ctx.settings.batch_size(FEED)
    collect_size = ctx.settings.feed(FEED).collect_batch_size
    concurrency = reindex_processes(ctx, feed) * threads
    started = time.perf_counter()
    loops = sorted({1, concurrency})
    # Per batch: the body, and per loop its headers. Each loop is an attempt of its own (its keys):
    # the server would otherwise replay its stored answers instead of handling the items.
    # A collection round of `collect_size` entities splits into export batches of `batch_size`,
    # as in process_batch.
    batches: list[tuple[bytes, dict[int, dict[str, str]]]] = []
    c = items.c
    query = (
        select(c.id, c.entity_key, c.deleted, c.modified_at, c.hash, c.payload)
        .where(c.feed == FEED)
        .order_by(c.entity_key, c.id)
    )
    pending: list[FeedItem] = []
    round_entities: set[int] = set()

    def flush() -> None:
        if not pending:
            return
        body = encode_batch(pending)
        encoding = {}
        if len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=1)
            encoding = {"Content-Encoding": "gzip"}
        headers = {
            workers: {
                "Idempotency-Key": idempotency_key(FEED, pending, f"ceiling-{workers}"),
                **encoding,
            }
            for workers in loops
        }
        batches.append((body, headers))
        pending.clear()

    total = 0
    with ctx.db.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for row in rows:
            if row.entity_key not in round_entities and len(round_entities) == collect_size:
                flush()
                round_entities.clear()
            round_entities.add(row.entity_key)
            pending.append(
                FeedItem(
                    row.id,
                    row.entity_key,
                    bool(row.deleted),
                    row.modified_at,
                    row.hash,
                    row.payload,
                    Change.NEW,
                )
            )
            total += 1
            if len(pending) == batch_size:
                flush()
        flush()
    encode_seconds = time.perf_counter() - started
    body_bytes = sum(len(body) for body, _ in batches)

    url = ctx.settings.destination(FEED)
    base_headers = {"Content-Type": "application/json", "User-Agent": "feedsync/0.1"}
    results = []
    for workers in loops:
        with httpx.Client(
            base_url=url,
            headers=base_headers,
            timeout=60,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        ) as client:

            def post(batch: tuple[bytes, dict[int, dict[str, str]]], workers: int = workers) -> int:
                response = client.post(
                    f"/feeds/{FEED}", content=batch[0], headers=batch[1][workers]
                )
                return response.status_code

            client.get("/_stats")  # connect before the timer
            started = time.perf_counter()
            if workers == 1:
                statuses = [post(batch) for batch in batches]
            else:
                with ThreadPoolExecutor(workers) as pool:
                    statuses = list(pool.map(post, batches))
            seconds = time.perf_counter() - started
        bad = sum(1 for status in statuses if status != 200)
        results.append(
            {"threads": workers, "seconds": seconds, "requests": len(batches), "non_200": bad}
        )
    return {
        "seconds": encode_seconds,
        "items": total,
        "batches": len(batches),
        "body_mb": body_bytes / 1e6,
        "loops": results,
    }


def _fault(ctx: Any, products: int, threads: int) -> Figures:
    import httpx
    from sqlalchemy import func, select

    from feeds.definitions import ItemStatus
    from feeds.pipeline import exporter, indexer
    from feeds.pipeline.run import RunOptions
    from feeds.state.tables import items

    feed = ctx.registry.get(FEED)
    _empty_feed_table(ctx)
    c = items.c
    due_later = (
        select(func.count())
        .select_from(items)
        .where(
            c.feed == FEED,
            c.status == int(ItemStatus.RETRYABLE),
            c.next_attempt_at.is_not(None),
        )
    )
    started = time.perf_counter()
    outcome = indexer.reindex(ctx, feed, options=RunOptions(send=True, threads=threads))
    full_seconds = time.perf_counter() - started
    after_full = _statuses(ctx)
    rounds = resent = 0
    while time.perf_counter() - started < FAULT_DEADLINE_S:
        with ctx.db.connect() as conn:
            if not conn.scalar(due_later):
                break
        tick = time.perf_counter()
        run = exporter.resend_failed(ctx, feed)
        if run is not None:
            rounds += 1
            resent += run.counts.rows_synced + run.counts.failed
        time.sleep(max(0.0, RESEND_EVERY_S - (time.perf_counter() - tick)))
    seconds = time.perf_counter() - started
    with ctx.db.connect() as conn:
        waiting = int(conn.scalar(due_later) or 0)
        left = conn.execute(
            select(c.error_code, c.attempts, func.count())
            .where(c.feed == FEED, c.status == int(ItemStatus.RETRYABLE))
            .group_by(c.error_code, c.attempts)
        ).all()
    stats = httpx.get(f"{ctx.settings.destination(FEED)}/_stats", timeout=30).json()
    return {
        "seconds": seconds,
        "full_seconds": full_seconds,
        **_counts(outcome.counts),
        "after_full": after_full,
        "resend_rounds": rounds,
        "resent": resent,
        "final": _statuses(ctx),
        "still_waiting": waiting,
        "retryable_left": [f"{n} x {code} after {attempts} attempts" for code, attempts, n in left],
        "server": stats,
        **_setup(ctx, feed, threads),
    }


PHASE_FUNCTIONS: dict[str, Callable[[Any, int, int], Figures]] = {
    "seed": _seed,
    "full": _full,
    "resync": _resync,
    "legacy": _legacy,
    "ceiling": _ceiling,
    "fault": _fault,
}


def _counts(counts: Any) -> Figures:
    return {**counts.as_dict(), "rows_synced": counts.rows_synced}


def _setup(ctx: Any, feed: Any, threads: int) -> Figures:
    from feeds.pipeline.indexer import reindex_processes

    return {
        "processes": reindex_processes(ctx, feed),
        "threads": threads,
        "batch_size": ctx.settings.batch_size(FEED),
    }


def _statuses(ctx: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from feeds.state.tables import items

    with ctx.db.connect() as conn:
        rows = conn.execute(
            select(items.c.status, func.count())
            .where(items.c.feed == FEED)
            .group_by(items.c.status)
        ).all()
    return {str(status): count for status, count in rows}


def _empty_feed_table(ctx: Any) -> None:
    """A fresh feed table (TRUNCATE on PostgreSQL, so its size counts no dead rows)."""
    with ctx.db.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("TRUNCATE feed_items")
        else:
            conn.exec_driver_sql("DELETE FROM feed_items")


def _table_size(ctx: Any) -> Figures:
    """The feed table's bytes (rows, primary key and indexes) and its row count."""
    with ctx.db.connect() as conn:
        rows = conn.exec_driver_sql("SELECT COUNT(*) FROM feed_items").scalar_one()
        if conn.dialect.name == "postgresql":
            size = conn.exec_driver_sql("SELECT pg_total_relation_size('feed_items')").scalar_one()
        else:
            # dbstat counts the pages of each b-tree, whatever the free list holds.
            size = conn.exec_driver_sql(
                "SELECT SUM(pgsize) FROM dbstat WHERE name = 'feed_items' "
                "OR name LIKE 'ix_feed_items%' OR name LIKE 'sqlite_autoindex_feed_items%'"
            ).scalar_one()
    return {"table_rows": int(rows), "table_bytes": int(size or 0)}


# -- the parent: databases, destinations, children, report --------------------------------------


class Destination:
    """The test destination as a separate process, stopped with SIGTERM."""

    def __init__(self, *faults: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.testing.destination_server",
                "--port",
                "0",
                "--print-port",
            ]
            + ["--quiet", *faults],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.stop()
            raise SystemExit("the test destination did not start")
        self.url = f"http://127.0.0.1:{line[1]}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the destination process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stats(self) -> Figures:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=30) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def machine_busy_seconds() -> float:
    """CPU time all cores have spent busy since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS  # all but idle and iowait


def run_phase(name: str, args: argparse.Namespace, env: dict[str, str], workdir: Path) -> Figures:
    out = workdir / f"{name}.json"
    log = workdir / f"{name}.log"
    command = [sys.executable, __file__, "--phase", name, "--products", str(args.products)]
    command += ["--threads", str(args.threads), "--out", str(out)]
    if args.profile:
        command += ["--profile", str(Path(args.profile).resolve() / f"{args.db}-{name}.prof")]
    with log.open("w") as output:
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=output)
        _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        sys.stdout.write(log.read_text()[-5000:])
        raise SystemExit(f"phase {name} failed")
    figures: Figures = json.loads(out.read_text())
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    figures["cpu_phase"] = usage.ru_utime + usage.ru_stime
    return figures


def database_url(db: str, workdir: Path) -> str:
    if db == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    _postgres_schema(create=True)
    return f"{POSTGRES_URL}?options=-csearch_path%3D{SCHEMA}"


def _postgres_schema(create: bool) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        if create:
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()


def config_file(workdir: Path, name: str, processes: int | None, extra: str = "") -> str:
    lines = [f"[feeds.{FEED}]"]
    if processes is not None:
        lines.append(f"reindex_processes = {processes}")
    if name == "legacy":
        lines.append('export_mode = "legacy"')
    path = workdir / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


def sent(figures: Figures) -> int:
    return int(figures.get("rows_synced", 0)) + int(figures.get("failed", 0))


def rate(items: int, seconds: float) -> str:
    return f"{items / seconds:>9,.0f} items/s" if items and seconds > 0 else " " * 17


def line(name: str, seconds: float, items: int, rss: float, detail: str) -> None:
    print(f"{name:<8} {seconds:8.2f} s {rate(items, seconds)}  peak RSS {rss:5.0f} MB  {detail}")


def counts_text(figures: Figures) -> str:
    names = ("new", "updated", "deleted", "skipped", "failed", "rows_synced")
    return ", ".join(f"{k} {figures[k]:,}" for k in names if figures.get(k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}"
    )
    # Chosen at 100k products: threads add nothing once the reindex processes
    # keep every core busy, and 1000-item batches cost a little less CPU than Feedsync's 500.
    parser.add_argument("--threads", type=int, default=1, help="send threads per process")
    parser.add_argument("--batch-size", type=int, default=1000, help="EXPORT_BATCH_SIZE")
    parser.add_argument(
        "--processes", type=int, default=None, help="reindex_processes (default: Feedsync's)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="cProfile each phase's main process into DIR/<db>-<phase>.prof; "
        "with --processes 1 --threads 1 all the sync work is in it",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _child(args)
        return
    chosen = [p for p in args.phases.split(",") if p]
    unknown = set(chosen) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}; accepted: {PHASES}")
    if "ceiling" in chosen and "legacy" not in chosen:
        chosen.append("legacy")  # the ceiling posts the items the legacy collection kept
    phases = [p for p in PHASES if p == "seed" or p in chosen]
    try:
        with tempfile.TemporaryDirectory(prefix="feedsync-bench-export-") as tmp:
            _run(args, phases, Path(tmp))
    finally:
        if args.db == "postgresql":
            _postgres_schema(create=False)


def _child(args: argparse.Namespace) -> None:
    if args.profile:
        import cProfile

        # Wall time: waits on the database (psycopg `wait`) or the destination (socket `recv`)
        # show up as such; a CPU-time timer costs a system call per function call.
        profiler = cProfile.Profile()
        figures = profiler.runcall(phase, args.phase, args.products, args.threads)
        profiler.dump_stats(args.profile)
    else:
        figures = phase(args.phase, args.products, args.threads)
    Path(args.out).write_text(json.dumps(figures, default=str))


def _run(args: argparse.Namespace, phases: Sequence[str], workdir: Path) -> None:
    destination = Destination()
    faulty: Destination | None = None
    try:
        base = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "DATABASE_URL": database_url(args.db, workdir),
            "EXPORT_URL": destination.url,
            "LOG_FORMAT": "json",
            "FEEDSYNC_CONFIG": config_file(workdir, "immediate", args.processes),
        }
        base.pop("SOURCE_DATABASE_URL", None)
        base["EXPORT_BATCH_SIZE"] = str(args.batch_size)
        envs = {
            "legacy": {**base, "FEEDSYNC_CONFIG": config_file(workdir, "legacy", args.processes)},
            "ceiling": {**base, "FEEDSYNC_CONFIG": config_file(workdir, "legacy", args.processes)},
        }
        if "fault" in phases:
            faulty = Destination(*FAULTS)
            envs["fault"] = {
                **base,
                "EXPORT_URL": faulty.url,
                "FEEDSYNC_CONFIG": config_file(workdir, "fault", args.processes, FAULT_RETRY),
            }
        print(
            f"# {args.db}, {args.products:,} products, {FEED} feed, HTTP test destination "
            f"(separate process), {os.cpu_count()} cores, {args.threads} send threads per process, "
            f"EXPORT_BATCH_SIZE {args.batch_size}, "
            f"reindex_processes {args.processes or 'default'}"
        )
        results: dict[str, Figures] = {}
        for name in phases:
            server = faulty if name == "fault" and faulty is not None else destination
            before = destination.stats()["requests"]
            busy, served = machine_busy_seconds(), server.cpu_seconds()
            figures = run_phase(name, args, envs.get(name, base), workdir)
            figures["cpu_machine"] = machine_busy_seconds() - busy
            figures["cpu_destination"] = server.cpu_seconds() - served
            figures["requests"] = destination.stats()["requests"] - before
            results[name] = figures
            _print_phase(name, figures)
        _summary(args, results)
    finally:
        destination.stop()
        if faulty is not None:
            faulty.stop()


def _print_phase(name: str, f: Figures) -> None:
    _print_counts(name, f)
    if name != "seed":
        own, served = float(f["cpu_phase"]), float(f["cpu_destination"])
        other = max(0.0, float(f["cpu_machine"]) - own - served)
        print(
            f"{'':<8} CPU s over the whole phase: this phase's processes {own:.1f}, "
            f"destination {served:.1f}, rest of the machine (database server ...) {other:.1f}"
        )


def _print_counts(name: str, f: Figures) -> None:
    rss = float(f["peak_rss_mb"])
    seconds = float(f["seconds"])
    if name == "seed":
        line(name, seconds, 0, rss, "")
    elif name in ("full", "resync"):
        setup = f"{f['processes']} processes x {f['threads']} threads, batches of {f['batch_size']}"
        extra = f", {f['requests']:,} requests; {setup}"
        if "table_bytes" in f:
            extra += f"; feed table {f['table_bytes'] / f['table_rows']:,.0f} B/item"
        line(name, seconds, sent(f), rss, counts_text(f) + extra)
    elif name == "legacy":
        per_item = f["table_bytes"] / f["table_rows"]
        line(
            name,
            seconds,
            int(f["new"]),
            rss,
            f"{counts_text(f)}; feed table {per_item:,.0f} B/item",
        )
    elif name == "ceiling":
        detail = (
            f"pre-encoding {f['items']:,} items into {f['batches']:,} batches "
            f"({f['body_mb']:,.0f} MB sent), not timed below"
        )
        line(name, seconds, 0, rss, detail)
        for loop in f["loops"]:
            label = f"  {loop['threads']} thr"
            note = f"{loop['requests']:,} requests, one httpx.Client, {loop['threads']} thread(s)"
            if loop["non_200"]:
                note += f", {loop['non_200']} not 200"
            line(label, float(loop["seconds"]), int(f["items"]), rss, note)
    elif name == "fault":
        server = f["server"]
        final, after = f["final"], f["after_full"]
        detail = (
            f"full sync {f['full_seconds']:.1f} s ({counts_text(f)}), "
            f"after it: accepted {after.get('200', 0):,}, rejected {after.get('400', 0):,}, "
            f"retryable {after.get('2', 0):,}; then {f['resend_rounds']} resend rounds "
            f"({f['resent']:,} items); "
            f"{server['requests']:,} requests {server['statuses']}; final statuses: "
            f"accepted {final.get('200', 0):,}, rejected {final.get('400', 0):,}"
        )
        if f["still_waiting"]:
            detail += f"; NOT DONE after {FAULT_DEADLINE_S} s: {f['still_waiting']:,} retryable"
        elif final.get("2", 0):
            detail += f", retryable with no attempt left {final['2']:,}"
        if f["retryable_left"]:
            detail += f" ({'; '.join(f['retryable_left'])})"
        line(name, seconds, 0, rss, detail)


def _summary(args: argparse.Namespace, results: dict[str, Figures]) -> None:
    print("summary")
    ceiling = 0.0
    if "ceiling" in results:
        c = results["ceiling"]
        best = min(c["loops"], key=lambda loop: loop["seconds"])
        ceiling = c["items"] / best["seconds"]
        print(f"  ceiling         {ceiling:>9,.0f} items/s ({best['threads']} thread(s))")
    for name in ("full", "resync"):
        if name not in results:
            continue
        f = results[name]
        items_per_s = sent(f) / float(f["seconds"])
        share = f", {items_per_s / ceiling:5.1%} of the ceiling" if ceiling else ""
        print(
            f"  {name:<15} {items_per_s:>9,.0f} items/s{share}  "
            f"(targets: >= {TARGET_RATE:,} items/s on PostgreSQL, >= {TARGET_SHARE:.0%} of the ceiling)"
        )
    pipeline = [n for n in ("full", "resync", "legacy", "fault") if n in results]
    if pipeline:
        peak = max(float(results[n]["peak_rss_mb"]) for n in pipeline)
        print(
            f"  peak RSS        {peak:>9,.0f} MB of the sync phases ({', '.join(pipeline)}; "
            f"target <= {TARGET_RSS_MB} MB)"
        )
    if "fault" in results:
        f = results["fault"]
        final = f["final"]
        print(
            f"  fault           {float(f['seconds']):>9.1f} s until every item was accepted or "
            f"rejected (full sync {f['full_seconds']:.1f} s + resends), "
            f"{f['server']['requests']:,} requests, accepted {final.get('200', 0):,}, "
            f"rejected {final.get('400', 0):,}"
        )
    for name, mode in (("full", "immediate"), ("legacy", "legacy")):
        if name in results and results[name].get("table_rows"):
            f = results[name]
            print(
                f"  feed table      {f['table_bytes'] / f['table_rows']:>9,.0f} B/item in {mode} "
                f"mode ({f['table_bytes'] / 1e6:,.0f} MB for {f['table_rows']:,} rows)"
            )


if __name__ == "__main__":
    main()
