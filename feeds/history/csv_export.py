"""Errors as CSV, with every cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from datetime import datetime

from feeds.history.read_model import ErrorRow
from feeds.pipeline.diff import iso

ERROR_CSV_COLUMNS = [
    "feed",
    "item_id",
    "category",
    "code",
    "message",
    "first_seen",
    "last_seen",
    "attempts",
    "resolved",
    "run_id",
    "field",
    "value",
]


def errors_csv(rows: Iterable[ErrorRow]) -> Iterator[str]:
    """Sync errors as CSV lines (a header first; ISO 8601 UTC times): `sync:errors --csv` and the API."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ERROR_CSV_COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(getattr(row, column, None)) for column in ERROR_CSV_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# OWASP CSV injection: a spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# A cell that is a plain number cannot hold a formula: "-5" stays a number for the spreadsheet.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _csv_value(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, str):
        return _as_text(value)
    return value


def _as_text(text: str) -> str:
    """The text of a CSV cell that a spreadsheet shows as text instead of running it as a formula."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    # Python 3.11's writer leaves a cell with a bare CR unquoted, and readers take the CR for the
    # end of the row: what follows it would start a cell of its own, a formula again.
    return text.replace("\r\n", "\n").replace("\r", "\n")
