"""What the sync-status table shows, read from the page's URL: a date range, feed, operation,
status, sort and page. A bad value is dropped and explained on the page, never a crash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from feeds.history.read_model import RunFilter, RunSort
from worker.api.filters import OPERATIONS, SORTS, STATUSES, NotAccepted, choice, day_range

DEFAULT_DAYS = 5
MAX_PAGE = 1_000_000


class DashboardQuery(BaseModel):
    """The query parameters of /dashboard, as sent: each is checked by `parse_filters`."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    feed: str | None = None
    operation: str | None = None
    status: str | None = None
    sort: str | None = None
    page: str | None = None
    resynced: str | None = None  # the outcome of a resync, shown once after its redirect
    cleared: str | None = None
    acted: str | None = None  # the audit entry of an action, shown once after its redirect

    def sent(self) -> dict[str, str]:
        """The parameters that were sent, by their names in the URL."""
        return self.model_dump(by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class RunFilters:
    """What the sync-status table shows: runs started in [since, until), filtered, sorted, one page."""

    since: date
    until: date | None = None
    feed: str | None = None
    operation: str | None = None
    status: str | None = None
    sort: str = "start"
    page: int = 1

    def query(self, **changes: object) -> str:
        """This state as a query string (the URL keeps it), with some values changed."""
        values: dict[str, object] = {
            "from": self.since.isoformat(),
            "to": self.until.isoformat() if self.until else None,
            "feed": self.feed,
            "operation": self.operation,
            "status": self.status,
            "sort": self.sort,
            "page": self.page,
        }
        values.update(changes)
        if values["page"] == 1:
            del values["page"]
        return urlencode({k: v for k, v in values.items() if v is not None and v != ""})

    def where(self) -> RunFilter:
        since, until = day_range(self.since, self.until)
        return RunFilter(
            since=since, until=until, feed=self.feed, operation=self.operation, status=self.status
        )


def parse_filters(
    params: Mapping[str, str], feeds: Sequence[str], today: date
) -> tuple[RunFilters, list[str]]:
    """Filters from the query string; a bad value is dropped and explained, never a crash."""
    problems: list[str] = []
    since = today - timedelta(days=DEFAULT_DAYS)
    until: date | None = None
    if params.get("from"):
        since = _date(params["from"], "from", problems) or since
    if params.get("to"):
        until = _date(params["to"], "to", problems)
    if until is not None and until < since:
        problems.append(
            f"The date range ends ({until}) before it starts ({since}); showing runs from {since}."
        )
        until = None
    chosen: dict[str, str | None] = {}
    for name, accepted in (("feed", feeds), ("operation", OPERATIONS), ("status", STATUSES)):
        try:
            chosen[name] = choice(name, params.get(name) or None, accepted)
        except NotAccepted as exc:
            problems.append(
                f"{name} {exc.value!r} is not known; accepted values are {', '.join(accepted)}."
            )
            chosen[name] = None
    sort = params.get("sort") or RunSort.START.value
    if sort not in SORTS:
        problems.append(f"sort {sort!r} is not accepted; sort by 'start' or 'end'.")
        sort = "start"
    page_text = params.get("page") or "1"
    page = number(page_text) or 1
    if page_text != str(page) or page > MAX_PAGE:
        page = 1
        problems.append(f"page {page_text!r} is not a page number; showing page 1.")
    filters = RunFilters(
        since, until, chosen["feed"], chosen["operation"], chosen["status"], sort, page
    )
    return filters, problems


def number(text: str) -> int | None:
    """A whole number written in ASCII digits (up to 18 of them), else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _date(text: str, name: str, problems: list[str]) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} {text!r} is not a date; use YYYY-MM-DD.")
        return None
