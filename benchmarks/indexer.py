"""Indexer benchmark: full reindex, unchanged re-run and a 1k partial reindex of the products feed.

    python benchmarks/indexer.py --db sqlite --products 1000000
    python benchmarks/indexer.py --db postgresql --products 1000000

Each phase runs in a child process of its own, so the peak RSS printed is that phase's alone.
The export goes to the file destination in a temporary directory. Prints one line per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POSTGRES_URL = os.environ.get(
    "FEEDSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA = "feedsync_bench"


def phase(name: str, products: int) -> dict[str, object]:
    """Run one phase in this process and return its figures."""
    from config.context import open_context
    from config.settings import load_settings
    from feeds.commerce import demo
    from feeds.pipeline import indexer

    ctx = open_context(load_settings())
    feed = ctx.registry.get("products")
    started = time.perf_counter()
    if name == "seed":
        demo.seed(ctx.source, products, 1)
        indexer.ensure_subscriptions(ctx)
        return {"seconds": time.perf_counter() - started}
    if name in ("full", "unchanged"):
        counts = indexer.reindex(ctx, feed).counts
    elif name == "change":
        affected = demo.change(ctx.source, 1000, 0, seed=7)
        return {"seconds": time.perf_counter() - started, "changed": len(affected["updated"])}
    elif name == "partial":
        outcome = indexer.update_view(ctx, feed)
        assert outcome is not None
        counts = outcome.counts
    else:
        raise SystemExit(f"unknown phase {name}")
    return {"seconds": time.perf_counter() - started, **counts.as_dict()}


def run_phase(name: str, products: int, env: dict[str, str]) -> dict[str, object]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--phase", name, "--products", str(products)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {name} failed")
    figures = json.loads(output.strip().splitlines()[-1])
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    return figures


def database_url(db: str, workdir: Path) -> str:
    if db == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{SCHEMA}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument(
        "--builder",
        choices=["query", "python"],
        default="query",
        help="the products feed as shipped (documents built by the database) or its Python builder",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.products)))
        return
    with tempfile.TemporaryDirectory(prefix="feedsync-bench-") as tmp:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "DATABASE_URL": database_url(args.db, workdir),
            "EXPORT_URL": f"file://{workdir / 'export'}",
            "LOG_FORMAT": "json",
        }
        env.pop("FEEDSYNC_CONFIG", None)
        if args.builder == "python":
            config = workdir / "python.toml"
            config.write_text('feed_modules = ["benchmarks.python_feeds"]\nbuiltin_feeds = false\n')
            env["FEEDSYNC_CONFIG"] = str(config)
        print(
            f"# {args.db}, {args.products:,} products, products feed ({args.builder} builder), "
            f"file destination, {os.cpu_count()} cores"
        )
        for name in ("seed", "full", "unchanged", "change", "partial"):
            figures = run_phase(name, args.products, env)
            seconds = float(figures["seconds"])  # type: ignore[arg-type]
            items = sum(int(figures.get(k, 0)) for k in ("new", "updated", "deleted", "skipped"))  # type: ignore[call-overload]
            rate = f"{items / seconds:>10,.0f} items/s" if items else " " * 18
            detail = ", ".join(
                f"{k} {figures[k]}"
                for k in ("new", "updated", "deleted", "skipped")
                if k in figures
            )
            print(
                f"{name:<10} {seconds:8.2f} s {rate}  peak RSS {figures['peak_rss_mb']:6.0f} MB  {detail}"
            )
        size = sum(f.stat().st_size for f in (workdir / "export").glob("*.jsonl"))
        print(f"export file: {size / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
