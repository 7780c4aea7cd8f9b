"""The `indexer:*` commands, printing what Magento's `bin/magento indexer:*` prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from config.context import open_context
from config.settings import Settings
from feeds.context import Context
from feeds.definitions import Feed, IndexerMode, IndexerStatus
from feeds.errors import FeedsyncError, LockedError, one_line
from feeds.history.feed_health import view_status
from feeds.history.health import MODE_LABEL, STATUS_LABEL
from feeds.history.runs import Counts
from feeds.pipeline import indexer
from feeds.state import feed_items as store
from feeds.state import indexer_state
from feeds.tracking import changelog
from worker.cli.output import say
from worker.cli.table import render


def register(sub: Any) -> None:
    p = sub.add_parser("indexer:info", help="list the indexers: id and title")
    p.set_defaults(handler=info)
    p = sub.add_parser("indexer:show-mode", help="show the mode of indexers")
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=show_mode)
    p = sub.add_parser("indexer:set-mode", help="set the mode of indexers: realtime or schedule")
    p.add_argument("mode", nargs="?")
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=set_mode)
    p = sub.add_parser(
        "indexer:show-dimensions-mode", help="show the dimensions mode of indexers (always none)"
    )
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=show_dimensions_mode)
    p = sub.add_parser(
        "indexer:set-dimensions-mode",
        help="refused: feeds have no dimensions (Magento's are for catalog_product_price)",
    )
    p.add_argument("indexer", nargs="?")
    p.add_argument("mode", nargs="?")
    p.set_defaults(handler=set_dimensions_mode)
    p = sub.add_parser("indexer:status", help="status, mode and changelog backlog of indexers")
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=status)
    p = sub.add_parser("indexer:reindex", help="full reindex of indexers")
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=reindex)
    p = sub.add_parser("indexer:reset", help="invalidate indexers (reindex required)")
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=reset)
    p = sub.add_parser(
        "indexer:set-status", help="set the status of indexers: invalid, suspended or valid"
    )
    p.add_argument("status", nargs="?")
    p.add_argument("ids", nargs="*")
    p.set_defaults(handler=set_status)


def _open(settings: Settings) -> Context:
    return open_context(settings)


def info(args: argparse.Namespace, settings: Settings) -> int:
    ctx = _open(settings)
    for feed in ctx.registry:
        print("%-40s %s" % (feed.indexer_id, feed.title))
    return 0


def show_mode(args: argparse.Namespace, settings: Settings) -> int:
    ctx = _open(settings)
    feeds = ctx.registry.select(args.ids)
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
    for feed in feeds:
        print("%-50s " % (feed.title + ":") + MODE_LABEL[states[feed.indexer_id].mode])
    return 0


def show_dimensions_mode(args: argparse.Namespace, settings: Settings) -> int:
    """Magento's `indexer:show-dimensions-mode`: a feed is never split, so its mode is `none`."""
    ctx = _open(settings)
    for feed in ctx.registry.select(args.ids):
        print("%-50s " % (feed.title + ":") + "none")
    return 0


def set_dimensions_mode(args: argparse.Namespace, settings: Settings) -> int:
    """Refused, exit 1, as Magento refuses an indexer without dimension modes: a feed is built
    whole, never split by website or customer group, so there is no mode to set."""
    if args.indexer is None:
        say(
            "Missing argument 'indexer': feeds have no dimensions, so no indexer here has a "
            "dimensions mode to set.",
            error=True,
        )
        return 1
    ctx = _open(settings)
    [feed] = ctx.registry.select([args.indexer])  # an unknown id: Magento's unsupported-types lines
    say(
        f"Invalid value for 'indexer' argument: {feed.title} ({feed.indexer_id}) has no "
        "dimensions, as no feed has: it is built whole, never split by website or customer group, "
        "so there is no dimensions mode to set.",
        error=True,
    )
    return 1


def set_mode(args: argparse.Namespace, settings: Settings) -> int:
    try:
        mode = IndexerMode(args.mode)
    except ValueError:
        print("Accepted values for mode are 'realtime' or 'schedule'", file=sys.stderr)
        return 1
    ctx = _open(settings)
    for feed in ctx.registry.select(args.ids):
        old = indexer.set_mode(ctx, feed, mode)
        if old is mode:
            print(f"Index mode for Indexer {feed.title} has not been changed")
        else:
            print(
                f"Index mode for Indexer {feed.title} was changed from '{MODE_LABEL[old]}' to '{MODE_LABEL[mode]}'"
            )
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    ctx = _open(settings)
    feeds = sorted(ctx.registry.select(args.ids), key=lambda f: f.title)
    with ctx.db.connect() as conn:
        states = indexer_state.all_states(conn)
        rebuilds = store.pending_rebuilds(conn)
    rows = []
    for feed in feeds:
        state = states[feed.indexer_id]
        schedule_status = schedule_updated = ""
        # Entities that could not be built wait in the backlog too: never "clean" while they do.
        unbuilt = rebuilds.get(feed.name, 0)
        if state.mode is IndexerMode.SCHEDULE or unbuilt:
            with ctx.source.connect() as src:
                pending = changelog.backlog(src, feed, state.version_id) + unbuilt
            schedule_status = f"{view_status(ctx, feed, state.status)} ({pending} in backlog)"
            schedule_updated = state.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        rows.append(
            [
                feed.indexer_id,
                feed.title,
                STATUS_LABEL[state.status],
                "Schedule" if state.mode is IndexerMode.SCHEDULE else "Save",
                schedule_status,
                schedule_updated,
            ]
        )
    print(
        render(["ID", "Title", "Status", "Update On", "Schedule Status", "Schedule Updated"], rows)
    )
    return 0


def reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 only when every indexer asked for was rebuilt (its run ended success or partial)."""
    ctx = _open(settings)
    feeds = ctx.registry.select(args.ids)
    indexer.ensure_subscriptions(ctx)
    failed = False
    for feed in feeds:
        if _status_of(ctx, feed) is IndexerStatus.SUSPENDED:
            say(f"{feed.title} index is suspended. Skipping.")
            continue
        try:
            outcome = indexer.reindex(ctx, feed)
        except LockedError:
            failed = True
            say(f"{feed.title} index is locked by another reindex process. Skipping.")
            continue
        except Exception as exc:  # one feed failing must not stop the others; it is left invalid
            if args.verbose:
                raise
            failed = True
            _print_error(feed, str(exc) if isinstance(exc, FeedsyncError) else one_line(exc))
            continue
        if not outcome.succeeded:
            failed = True
            status = outcome.status.value if outcome.status else "unknown"
            _print_error(feed, f"the run ended {status}: {outcome.message or 'no reason recorded'}")
            continue
        say(f"{feed.title} index has been rebuilt successfully in {_hms(outcome.seconds)}")
        for line in _shortfall(outcome.counts):
            say(line)
    return 1 if failed else 0


def _print_error(feed: Feed, reason: str) -> None:
    say(f"{feed.title} index process error during indexation process:", error=True)
    say(reason, error=True)


def _shortfall(counts: Counts) -> list[str]:
    """What a rebuild that succeeded did not send: rejected, retried later, or waiting for budget."""
    lines = []
    if counts.rejected:
        lines.append(f"{counts.rejected} items rejected by the destination: see sync:errors")
    if retrying := counts.failed - counts.rejected:
        lines.append(f"{retrying} items failed and will be retried: see sync:errors")
    if counts.deferred:
        lines.append(f"{counts.deferred} items wait for the API-call budget: see sync:status")
    return lines


def reset(args: argparse.Namespace, settings: Settings) -> int:
    ctx = _open(settings)
    for feed in ctx.registry.select(args.ids):
        with ctx.db.begin() as conn:
            indexer_state.set_status(conn, feed.indexer_id, IndexerStatus.INVALID)
        print(f"{feed.title} indexer has been invalidated.")
    return 0


SETTABLE = (IndexerStatus.INVALID, IndexerStatus.SUSPENDED, IndexerStatus.VALID)


def set_status(args: argparse.Namespace, settings: Settings) -> int:
    if args.status not in [s.value for s in SETTABLE]:
        accepted = ", ".join(f'"{s.value}"' for s in SETTABLE)
        print(
            f'Invalid status "{args.status or ""}". Accepted values are {accepted}.',
            file=sys.stderr,
        )
        return 1
    new = IndexerStatus(args.status)
    ctx = _open(settings)
    for feed in ctx.registry.select(args.ids):
        with ctx.db.begin() as conn:
            old = indexer_state.get_state(conn, feed.indexer_id).status
            indexer_state.set_status(conn, feed.indexer_id, new)
        print(
            f"Index status for Indexer '{feed.title}' was changed from '{old.value}' to '{new.value}'."
        )
    return 0


def _status_of(ctx: Context, feed: Feed) -> IndexerStatus:
    with ctx.db.connect() as conn:
        return indexer_state.get_state(conn, feed.indexer_id).status


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
