"""A deployment that syncs the sample catalog's products alone (TOML `feed_modules`, with
`builtin_feeds = false`): the other feeds would only add minutes to the scenarios.

`while_reading` lets a scenario act as the application while a batch is read: each callable runs
once, inside the build of the next batch, right after that batch's rows were read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from sqlalchemy.engine import Connection

from feeds.commerce.builders import build_products
from feeds.commerce.feeds import FEEDS as COMMERCE_FEEDS
from feeds.definitions import Document, Keys

while_reading: list[Callable[[], None]] = []


def _build(conn: Connection, keys: Keys) -> Iterator[Document]:
    documents = build_products(conn, keys)
    first = next(documents, None)  # the builder reads all of the batch's rows before the first
    while while_reading:
        while_reading.pop(0)()
    if first is not None:
        yield first
        yield from documents


# A Python builder (query=None): the hook runs between reading the rows and building the documents.
FEEDS = [
    replace(feed, build=_build, query=None) for feed in COMMERCE_FEEDS if feed.name == "products"
]
