"""Item lookup: one item id or entity key across the feeds, with its feed-table row, the errors
recorded for it, the runs that recorded them, and its document when the feed table keeps one."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from feeds.context import Context
from feeds.definitions import ExportMode
from feeds.history import read_model
from feeds.history.read_model import ErrorRow, RunRow
from feeds.state import item_lookup
from feeds.state.item_lookup import ItemRow

MAX_MATCHES = 50


@dataclass(frozen=True)
class ItemReport:
    item: ItemRow
    errors: list[ErrorRow]  # newest first, resolved ones too
    runs: list[RunRow]  # the runs that recorded those errors and are still kept
    # The canonical JSON of the document as last built: only legacy-mode feeds keep it.
    document: object | None
    document_kept: bool


def lookup_item(ctx: Context, text: str) -> list[ItemReport]:
    """Every item whose id is `text` or whose entity key it is, in any feed, by feed and id."""
    wanted = text.strip()
    if not wanted:
        return []
    reports = []
    with ctx.db.connect() as conn:
        for item in item_lookup.find_items(conn, ctx.registry.names(), wanted, MAX_MATCHES):
            errors = read_model.item_errors(conn, item.feed, item.id)
            touched = read_model.runs_by_ids(conn, {e.run_id for e in errors})
            kept = ctx.plan.feed(item.feed).export_mode is ExportMode.LEGACY
            body = item_lookup.payload(conn, item.feed, item.id) if kept else None
            reports.append(
                ItemReport(
                    item=item,
                    errors=errors,
                    runs=touched,
                    document=None if body is None else orjson.loads(body),
                    document_kept=body is not None,
                )
            )
    return reports
