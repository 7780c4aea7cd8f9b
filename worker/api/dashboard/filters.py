"""What the sync-status table shows, read from the page's URL: a time range, feed, operation,
status, sort and page. A bad value is dropped and explained on the page, never a crash.

`from` and `to` take a whole UTC day (`YYYY-MM-DD`, `to` included) or a moment: an ISO 8601 time
with an offset (what the page's script sends, converted from the viewer's time zone) or without
one (UTC: what a browser without the script sends)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from feeds.history.read_model import RunFilter, RunSort, parse_moment
from worker.api.filters import OPERATIONS, SORTS, STATUSES, NotAccepted, choice

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
    """What the sync-status table shows: runs started in [since, until) (UTC), filtered, sorted,
    one page."""

    since: datetime
    until: datetime | None = None
    feed: str | None = None
    operation: str | None = None
    status: str | None = None
    sort: str = "start"
    page: int = 1

    def query(self, **changes: object) -> str:
        """This state as a query string (the URL keeps it), with some values changed."""
        values: dict[str, object] = {
            "from": _moment_text(self.since),
            "to": None if self.until is None else _moment_text(self.until, end=True),
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
        return RunFilter(
            since=self.since,
            until=self.until,
            feed=self.feed,
            operation=self.operation,
            status=self.status,
        )


def input_value(moment: datetime | None) -> str:
    """A moment as a `datetime-local` input's value (UTC; the page's script shows it local)."""
    return "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M")


def _moment_text(moment: datetime, *, end: bool = False) -> str:
    """A whole day as `YYYY-MM-DD` (an end: the day before the midnight), else ISO 8601 UTC."""
    if moment.time() == datetime.min.time():
        return (moment.date() - timedelta(days=1) if end else moment.date()).isoformat()
    return moment.isoformat(timespec="seconds") + "Z"


def parse_filters(
    params: Mapping[str, str], feeds: Sequence[str], today: date
) -> tuple[RunFilters, list[str]]:
    """Filters from the query string; a bad value is dropped and explained, never a crash."""
    problems: list[str] = []
    since = _midnight(today - timedelta(days=DEFAULT_DAYS))
    until: datetime | None = None
    if params.get("from"):
        since = _moment(params["from"], "from", problems) or since
    if params.get("to"):
        until = _moment(params["to"], "to", problems, end=True)
    if until is not None and until <= since:
        problems.append(
            f"The time range ends ({_moment_text(until, end=True)}) before it starts "
            f"({_moment_text(since)}); showing runs from {_moment_text(since)}."
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


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _moment(text: str, name: str, problems: list[str], *, end: bool = False) -> datetime | None:
    """A day (as its first moment; an end day as the midnight after it) or a moment, in UTC."""
    try:
        if _DAY.fullmatch(text):
            day = date.fromisoformat(text)
            if end:
                return None if day == date.max else _midnight(day + timedelta(days=1))
            return _midnight(day)
        return parse_moment(text)
    except ValueError:
        problems.append(
            f"{name} {text!r} is not a date; use YYYY-MM-DD, or a date and time "
            "(YYYY-MM-DDTHH:MM, UTC unless it carries an offset such as Z or +01:00)."
        )
        return None
