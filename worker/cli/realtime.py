"""`indexer:notify` (signal changed entities) and `listen` (the realtime listener process)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from config.context import open_context
from config.settings import Settings
from feeds import errors
from feeds.definitions import IndexerMode
from feeds.pipeline import indexer
from feeds.state import indexer_state
from feeds.tracking import realtime
from worker.embedded import stop_on_signals
from worker.realtime import Listener, enqueue_task, sync_in_process


def register(sub: Any) -> None:
    p = sub.add_parser(
        "indexer:notify",
        help="record changed entities of a feed (the application's realtime signal)",
    )
    p.add_argument("--feed", required=True, help="feed name or indexer id")
    p.add_argument(
        "--ids", required=True, help="comma-separated entity ids (keys of the feed's driving table)"
    )
    p.set_defaults(handler=notify)
    p = sub.add_parser(
        "listen",
        help="realtime listener: sync realtime feeds as soon as they change (fleet: enqueue tasks)",
    )
    p.add_argument(
        "--heartbeat-file",
        type=Path,
        default=None,
        help="touch this file every few seconds while listening (for health checks)",
    )
    p.set_defaults(handler=listen, quiet_logs=False)


def notify(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    try:
        feed = ctx.registry.get(args.feed)
        ids = [i for i in args.ids.split(",") if i.strip()]
        if not ids:
            raise errors.NotifyError(
                "--ids needs at least one entity id; accepted: entity ids separated by commas, "
                "such as --ids 12,13."
            )
        count = realtime.notify(ctx, feed, ids)
        with ctx.db.connect() as conn:
            mode = indexer_state.get_state(conn, feed.indexer_id).mode
    finally:
        ctx.close()
    when = (
        "the realtime listener syncs them now"
        if mode is IndexerMode.REALTIME
        else "the next indexer_update_all_views syncs them (schedule mode)"
    )
    print(f"Recorded {count} changed entities of feed {feed.name}; {when}.")
    return 0


def listen(args: argparse.Namespace, settings: Settings) -> int:
    ctx = open_context(settings)
    try:
        indexer.ensure_subscriptions(ctx)
        if settings.broker_url:
            from redis import Redis

            from worker.app import app

            dispatch = enqueue_task(app, Redis.from_url(settings.broker_url))
        else:
            dispatch = sync_in_process(ctx)
        stop = threading.Event()
        with stop_on_signals(stop):
            Listener(ctx, dispatch, heartbeat=args.heartbeat_file).run(stop)
    finally:
        ctx.close()
    return 0
