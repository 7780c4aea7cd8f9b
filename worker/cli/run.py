"""`run [--demo]`: the embedded all-in-one — migrate, then the jobs on schedule, the realtime
listener, the metrics endpoint and the HTTP API, all in this process, no broker."""

from __future__ import annotations

import argparse
import random
import socket
import threading
import time
from contextlib import nullcontext
from typing import Any

import structlog

from config.context import AppContext, open_context
from config.settings import Settings
from feeds.commerce import demo
from feeds.context import Context
from feeds.definitions import IndexerMode
from feeds.errors import ConfigError
from feeds.history.integrations import public_destination
from feeds.pipeline import indexer
from feeds.urls import file_destination_path
from worker import metrics
from worker.api.listen import listen
from worker.cli.api import port
from worker.embedded import Background, run_forever, start_api, start_listener, stop_on_signals

log = structlog.get_logger("worker.run")

DEMO_PRODUCTS = 2000
DEMO_CHANGE_EVERY_S = 20.0
DEMO_REALTIME_FEED = "products"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="embedded all-in-one: jobs, realtime listener, metrics and API in this process",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="seed the sample catalog and keep changing a few products",
    )
    p.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="API port (default 8000; 0: any free)")
    p.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        help="Prometheus endpoint port (default METRICS_PORT, 9808; 0: any free)",
    )
    p.add_argument("--no-api", action="store_true", help="do not serve the HTTP API")
    p.add_argument("--demo-products", type=int, default=DEMO_PRODUCTS, help=argparse.SUPPRESS)
    p.add_argument(
        "--demo-change-every", type=float, default=DEMO_CHANGE_EVERY_S, help=argparse.SUPPRESS
    )
    p.set_defaults(handler=run, quiet_logs=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # The API port before the database is opened: a busy port refuses the start (one sentence,
    # exit 1), as a busy metrics port does, rather than leaving a runner without its API.
    with nullcontext() if args.no_api else listen(args.host, args.port) as api_listener:
        return _run(args, settings, api_listener)


def _run(args: argparse.Namespace, settings: Settings, api_listener: socket.socket | None) -> int:
    ctx = open_context(settings)
    stop = threading.Event()
    background = Background(stop)
    try:
        with stop_on_signals(stop):
            extra = None
            if args.demo:
                if _seed_if_empty(ctx, args.demo_products):
                    _realtime_demo_feed(ctx)
                extra = _changer(ctx, args.demo_change_every)
            indexer.ensure_subscriptions(ctx)
            # After the subscriptions: a scrape reads the changelogs.
            background.metrics = _serve_metrics(ctx, args.metrics_port, args.host)
            if api_listener is not None:
                start_api(ctx, background, api_listener, args.host)
            start_listener(ctx, background)
            _print_welcome(ctx, background, args.demo_change_every if args.demo else None)
            run_forever(ctx, stop, extra)
    except KeyboardInterrupt:
        print("\nInterrupted.", flush=True)
    finally:
        background.close()
        ctx.close()
    print("Stopped.", flush=True)
    return 0


def _serve_metrics(ctx: AppContext, port: int | None, host: str) -> metrics.Endpoint:
    try:
        return metrics.serve(ctx, port, addr=host)
    except OSError as exc:
        chosen = ctx.settings.metrics_port if port is None else port
        raise ConfigError(
            f"The metrics port {chosen} cannot be used ({exc.strerror}); accepted: a free port "
            "in METRICS_PORT or --metrics-port (0 picks one)."
        ) from None


def _seed_if_empty(ctx: Context, products: int) -> bool:
    """Seed the sample catalog unless the source has products; True when it seeded."""
    if demo.is_seeded(ctx.source):
        return False
    print(f"Seeding the sample catalog with {products} products …", flush=True)
    demo.seed(ctx.source, products)
    return True


def _realtime_demo_feed(ctx: Context) -> None:
    """A fresh demo shows both modes: products in realtime (seconds), the other feeds on schedule."""
    indexer.set_mode(ctx, ctx.registry.get(DEMO_REALTIME_FEED), IndexerMode.REALTIME)


def _changer(ctx: Context, every_s: float) -> Any:
    """Every `every_s` seconds, update a few products as the application would."""
    last = [time.monotonic()]

    def change() -> None:
        if time.monotonic() - last[0] < every_s:
            return
        last[0] = time.monotonic()
        affected = demo.change(ctx.source, update=random.randint(1, 5), delete=0)
        log.info("demo.changed", feed="products", updated=len(affected["updated"]))

    return change


def _print_welcome(ctx: AppContext, background: Background, demo_every_s: float | None) -> None:
    export = ctx.settings.export_url
    where = (
        file_destination_path(export).resolve()
        if export.startswith("file://")
        else public_destination(export)
    )
    lines = [
        "Feedsync is running (embedded mode: jobs, realtime listener, metrics and API in this "
        "process, no broker). Ctrl-C stops it.",
        f"  worker database : {ctx.db.url.render_as_string(hide_password=True)}",
        f"  exported items  : {where}/<feed>.jsonl",
    ]
    if background.api_url:
        lines += [
            f"  dashboard       : {background.api_url}/dashboard  "
            "(sign in with a key from: python -m worker apikey:create --name me "
            "--permission sync.admin)",
            f"  API             : {background.api_url}/cdi/integrations",
        ]
    if background.metrics is not None:
        where = f"http://{background.metrics.host}:{background.metrics.port}/metrics"
        lines.append(f"  metrics         : {where}")
    lines.append("  indexers        : python -m worker indexer:status")
    if demo_every_s is not None:
        lines.append(
            f"  demo            : a few products change every {demo_every_s:g} s; "
            "realtime feeds export them within a second, schedule feeds at the next minute"
        )
    print("\n".join(lines), flush=True)
