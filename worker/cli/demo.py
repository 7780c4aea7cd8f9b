"""`demo:seed` and `demo:change`: the sample commerce catalog in the source database."""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from config.context import open_context
from config.settings import Settings
from feeds.commerce import demo
from feeds.pipeline import indexer


def register(sub: Any) -> None:
    p = sub.add_parser("demo:seed", help="create (or top up) the sample commerce catalog")
    p.add_argument("--products", type=positive, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(handler=seed)
    p = sub.add_parser(
        "demo:change", help="update and delete sample products as the application would"
    )
    p.add_argument("--update", type=_not_negative, default=0)
    p.add_argument("--delete", type=_not_negative, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(handler=change)


def seed(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    started = time.monotonic()
    added = demo.seed(ctx.source, args.products, args.seed)
    # Schedule-mode indexers start tracking the new tables right away.
    indexer.ensure_subscriptions(ctx)
    summary = ", ".join(f"{count} {name}" for name, count in added.items())
    print(
        f"Seeded the sample catalog ({summary or 'nothing to add'}) in {time.monotonic() - started:.1f} s"
    )
    return 0


def change(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    affected = demo.change(ctx.source, args.update, args.delete, args.seed)
    print(orjson.dumps(affected).decode())
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or a positive number, got {text}")
    return value
