"""The dashboard and the health endpoint on a big worker database: 1M feed-table items and 5 days
of runs on PostgreSQL (or SQLite), timed in-process (FastAPI's TestClient, session cookie and
key check included).

    python benchmarks/dashboard.py                         # PostgreSQL, 1,000,000 items, 5 days
    python benchmarks/dashboard.py --db sqlite --items 200000
    python benchmarks/dashboard.py --items 20000 --repeat 3   # a quick run

The database is a fresh schema (PostgreSQL) or file (SQLite), dropped afterwards. It holds the
sample catalog (200 products, the changelog triggers on, 50 changes pending in the products
backlog), the `products` feed table with `--items` rows (95% status 200, 2% 400, 1% 2, 0.5% 0,
0.5% -1, 1% never sent), one run per feed every minute for `--days` days (7 feeds: 50,400 runs
for 5 days) and an unresolved error per 400 and 2 item. Each page is fetched `--repeat` times
after two warm-up requests; the median and the slowest are printed. The item counts of feed
health are kept between pages until a run starts, ends or is removed: the last line times the
dashboard with a new run before each request, so that every page counts the 1M rows again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get(
    "FEEDSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FEEDS = 7  # the built-in feeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "postgresql":
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(POSTGRES_URL)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
            db_url = url.render_as_string(hide_password=False)
            try:
                run(db_url, tmp, args)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
        else:
            run(f"sqlite:///{tmp}/bench.db", tmp, args)
    return 0


def run(db_url: str, tmp: str, args: argparse.Namespace) -> None:
    from fastapi.testclient import TestClient

    from config.context import open_context
    from config.settings import load_settings
    from feeds.commerce import demo
    from feeds.pipeline import indexer
    from worker.api import apikeys
    from worker.api.app import create_app

    settings = load_settings(
        {"DATABASE_URL": db_url, "EXPORT_URL": f"file://{tmp}/export", "LOG_FORMAT": "json"}
    )
    ctx = open_context(settings)
    demo.seed(ctx.source, 200)
    indexer.ensure_subscriptions(ctx)
    started = time.perf_counter()
    seed(ctx.db, args.items, args.days, ctx.registry.names())
    with ctx.source.begin() as conn:  # 50 changes waiting in the products changelog
        conn.execute(text("UPDATE products SET name = name || ' v2' WHERE id <= 50"))
    print(
        f"seeded {args.items:,} items, {FEEDS * 1440 * args.days:,} runs "
        f"on {ctx.db.dialect.name} in {time.perf_counter() - started:.0f} s"
    )
    _, key = apikeys.create_key(ctx.db, "bench", ["sync.admin"])
    ctx.close()
    with TestClient(create_app(settings)) as client:
        client.post("/dashboard/login", data={"api_key": key}, follow_redirects=False)
        bearer = {"Authorization": f"Bearer {key}"}
        run_id = client.get("/sync/runs?limit=1", headers=bearer).json()["results"][0]["id"]
        pages = [
            ("/dashboard", {}),
            ("/sync/feeds", bearer),
            ("/dashboard/feeds/products/items?status=400", {}),
            (f"/dashboard/runs/{run_id}", {}),
            ("/dashboard/items?q=product-500000", {}),
            ("/dashboard/trends", {}),
        ]
        for path, headers in pages:
            timed(client, path, headers, args.repeat, lambda: None)
        # A run started since the last page: the item counts are counted again.
        engine = create_engine(db_url)
        timed(client, "/dashboard", {}, args.repeat, lambda: new_run(engine), "(a new run)")
        engine.dispose()


def timed(
    client: Any,
    path: str,
    headers: dict[str, str],
    repeat: int,
    before: Callable[[], None],
    label: str = "",
) -> None:
    times = []
    for n in range(repeat + 2):
        before()
        begun = time.perf_counter()
        answer = client.get(path, headers=headers)
        elapsed = (time.perf_counter() - begun) * 1000
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        if n >= 2:
            times.append(elapsed)
    print(
        f"{path + ' ' + label:48s} median {statistics.median(times):7.1f} ms   "
        f"slowest {max(times):7.1f} ms"
    )


def new_run(engine: Engine) -> None:
    from feeds.clock import utcnow
    from feeds.state.tables import sync_runs

    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sync_runs.insert().values(
                id=uuid.uuid4().hex,
                feed="products",
                operation="partial_sync",
                status="success",
                started_at=now,
                finished_at=now,
            )
        )


def seed(engine: Engine, items: int, days: int, feeds: list[str]) -> None:
    """Bulk rows written by SQL (generate_series, or a recursive CTE on SQLite)."""
    numbers = (
        "generate_series(1, {n}) AS s(n)"
        if engine.dialect.name == "postgresql"
        else "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {n}) "
        "SELECT n FROM c) AS s"
    )
    now = "CURRENT_TIMESTAMP"
    digest = (
        "decode(md5(n::text), 'hex')" if engine.dialect.name == "postgresql" else "randomblob(16)"
    )
    status = (
        "CASE WHEN n % 200 < 190 THEN 200 WHEN n % 200 < 194 THEN 400 WHEN n % 200 < 196 THEN 2 "
        "WHEN n % 200 = 196 THEN 0 WHEN n % 200 = 197 THEN -1 ELSE NULL END"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feed_items (feed, id, entity_key, hash, deleted, modified_at, status, "
                "sent_hash, attempts, error_code, error_message, updated_at) "
                f"SELECT 'products', 'product-' || n, n, {digest}, false, {now}, {status}, NULL, "
                f"CASE WHEN n % 200 >= 190 THEN 1 ELSE 0 END, NULL, NULL, {now} "
                f"FROM {numbers.format(n=items)}"
            )
        )
        minutes = 1440 * days
        feed_of = " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(feeds))
        started = (
            "NOW() - (n * INTERVAL '1 minute') / 7"
            if engine.dialect.name == "postgresql"
            else "datetime('now', '-' || (n / 7.0) || ' minutes')"
        )
        conn.execute(
            text(
                "INSERT INTO sync_runs (id, feed, operation, status, started_at, finished_at, new, "
                "updated, deleted, failed, skipped, rows_synced, rows_failed_with_errors) "
                f"SELECT 'run' || n, CASE n % {len(feeds)} {feed_of} END, 'partial_sync', "
                "CASE WHEN n % 50 = 0 THEN 'partial' ELSE 'success' END, "
                f"{started}, {started}, n % 9, n % 4, 0, CASE WHEN n % 50 = 0 THEN 1 ELSE 0 END, "
                f"n % 5, n % 9, 0 FROM {numbers.format(n=FEEDS * minutes)}"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sync_errors (run_id, feed, item_id, category, code, message, "
                "first_seen, last_seen, attempts, resolved) "
                "SELECT 'run' || (n % 5000 * 7), 'products', id, "
                "CASE WHEN status = 400 THEN 'property_values' ELSE 'transient' END, "
                "CASE WHEN status = 400 THEN 'INVALID_VALUE' ELSE 'HTTP_503' END, 'seeded', "
                f"{now}, {now}, 1, false FROM feed_items "
                f"JOIN {numbers.format(n=items)} ON feed_items.entity_key = n "
                "WHERE feed = 'products' AND status IN (400, 2)"
            )
        )
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


if __name__ == "__main__":
    raise SystemExit(main())
