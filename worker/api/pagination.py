"""Pages of the `cdi` lists: exactly 10 rows, and the `Link` header pointing to their neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PAGE_SIZE = 10

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page, newest first; `prev_key`/`next_key` are the sort keys to page from, when such pages exist."""

    rows: Sequence[T]
    prev_key: tuple[str, ...] | None
    next_key: tuple[str, ...] | None


def link_header(url: str, prev_cursor: str | None, next_cursor: str | None) -> str | None:
    """`<url?cursor=…>; rel="prev", <url?cursor=…>; rel="next"`, with only the links that exist."""
    links = [
        f'<{with_cursor(url, cursor)}>; rel="{rel}"'
        for rel, cursor in (("prev", prev_cursor), ("next", next_cursor))
        if cursor is not None
    ]
    return ", ".join(links) or None


def with_cursor(url: str, cursor: str) -> str:
    """`url` with its `cursor` query parameter set to `cursor` (other parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "cursor"]
    query.append(("cursor", cursor))
    return urlunsplit(parts._replace(query=urlencode(query)))
