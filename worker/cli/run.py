"""`run [--demo]`: the embedded all-in-one (migrate, then run the jobs on schedule; no broker)."""

from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any

import structlog
from sqlalchemy import func, inspect, select, table

from config.settings import Settings, file_destination_path
from feeds import indexer
from feeds.commerce import demo
from feeds.context import Context, open_context
from worker.embedded import run_forever

log = structlog.get_logger("worker.run")

DEMO_PRODUCTS = 2000
DEMO_CHANGE_EVERY_S = 20.0


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="embedded all-in-one: migrate and run the jobs in this process")
    p.add_argument(
        "--demo",
        action="store_true",
        help="seed the sample catalog and keep changing a few products",
    )
    p.add_argument("--demo-products", type=int, default=DEMO_PRODUCTS, help=argparse.SUPPRESS)
    p.set_defaults(handler=run, quiet_logs=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    extra = None
    if args.demo:
        _seed_if_empty(ctx, args.demo_products)
        extra = _changer(ctx)
    indexer.ensure_subscriptions(ctx)
    _print_welcome(ctx, args.demo)
    stop = threading.Event()
    try:
        run_forever(ctx, stop, extra)
    except KeyboardInterrupt:
        stop.set()
        print("\nStopped.")
    finally:
        ctx.close()
    return 0


def _seed_if_empty(ctx: Context, products: int) -> None:
    with ctx.source.connect() as conn:
        present = inspect(conn).has_table("products") and (
            conn.scalar(select(func.count()).select_from(table("products"))) or 0
        )
    if not present:
        print(f"Seeding the sample catalog with {products} products …")
        demo.seed(ctx.source, products)


def _changer(ctx: Context) -> Any:
    """Every DEMO_CHANGE_EVERY_S, update a few products as the application would."""
    last = [time.monotonic()]

    def change() -> None:
        if time.monotonic() - last[0] < DEMO_CHANGE_EVERY_S:
            return
        last[0] = time.monotonic()
        affected = demo.change(ctx.source, update=random.randint(1, 5), delete=0)
        log.info("demo.changed", feed="products", updated=len(affected["updated"]))

    return change


def _print_welcome(ctx: Context, demo_mode: bool) -> None:
    export = ctx.settings.export_url
    where = file_destination_path(export).resolve() if export.startswith("file://") else export
    print(
        "Feedsync is running (embedded mode: jobs run in this process, no broker). Ctrl-C stops it."
    )
    print(f"  worker database : {ctx.settings.database_url}")
    print(f"  exported items  : {where}/<feed>.jsonl")
    print("  watch it        : python -m worker indexer:status")
    if demo_mode:
        print(
            f"  demo            : a few products change every {DEMO_CHANGE_EVERY_S:.0f} s; partial syncs run every minute"
        )
