"""The dashboard's data: the domain's queries, with SQL filters and LIMIT, so that thousands of
runs cost one page."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from feeds.history import read_model
from feeds.history.categories import help_for
from feeds.history.error_details import ErrorGroup, groups
from feeds.history.read_model import ErrorRow, RunRow, RunSort
from feeds.history.record_links import RecordLinks, Templates, record_links
from worker.api.dashboard.filters import RunFilters

RUNS_PER_PAGE = 50
RECORDS_PER_CARD = 200


@dataclass
class RunPage:
    runs: list[RunRow]
    total: int
    page: int
    pages: int


def run_page(conn: Connection, f: RunFilters, per_page: int = RUNS_PER_PAGE) -> RunPage:
    """One page of the runs the filters select, newest first by start or end time."""
    where = f.where()
    sort = RunSort(f.sort)
    rows, total = read_model.find_runs(
        conn, where, sort=sort, limit=per_page, offset=(f.page - 1) * per_page
    )
    pages = max(1, -(-total // per_page))
    if f.page > pages:  # a page past the end (the runs changed since): show the last one
        rows, total = read_model.find_runs(
            conn, where, sort=sort, limit=per_page, offset=(pages - 1) * per_page
        )
    return RunPage(rows, total, min(f.page, pages), pages)


@dataclass
class ErrorCard:
    category: str
    title: str
    errors: int
    records: int
    resolution: str
    items: list[ErrorRow] = field(default_factory=list)
    feeds: list[tuple[str, int]] = field(default_factory=list)  # current errors per feed
    groups: list[ErrorGroup] = field(default_factory=list)  # by field, or by missing record
    links: dict[int, RecordLinks] = field(default_factory=dict)  # by error id, when configured


def error_cards(
    conn: Connection, feed: str | None = None, templates: Templates | None = None
) -> list[ErrorCard]:
    """The current errors per category: counts of errors and affected records, what to do, the
    errors grouped by field or missing record, and the most recent records with their links (the
    CSV export has them all)."""
    cards = []
    per_feed = read_model.error_feeds(conn, feed=feed)
    for summary in read_model.error_summary(conn, feed=feed):
        items, _ = read_model.errors_page(
            conn, feed=feed, category=summary.category, limit=RECORDS_PER_CARD
        )
        guide = help_for(summary.category)
        cards.append(
            ErrorCard(
                summary.category,
                guide.title,
                summary.errors,
                summary.records,
                guide.resolution,
                items,
                per_feed.get(summary.category, []),
                groups(conn, summary.category, feed),
                record_links(conn, items, templates or {}),
            )
        )
    return cards
