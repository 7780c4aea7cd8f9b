"""What a feed is, and how a developer declares one on their own schema.

A feed is built from a *driving table* whose integer key identifies an entity (a product, an
order, ...). A builder turns a batch of entities into documents; each document is one feed item
with a stable string id. `watches` name every source table whose rows affect an entity, and how a
row leads to its entity id: the change-tracking triggers are generated from them.

    from feeds.definitions import Document, Feed, Keys, Watch

    def build_books(conn, keys: Keys):
        for row in conn.execute(select(books).where(keys.match(books.c.id))):
            yield Document(entity=row.id, id=f"book-{row.id}", data={"title": row.title})

    FEEDS = [Feed(name="books", indexer_id="library_books", title="Book Feed",
                  key_table="books", watches=(Watch("books", "id"),), build=build_books)]
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    ColumnElement,
    and_,
    true,
)
from sqlalchemy.engine import Connection

from feeds.errors import ConfigError, FeedDefinitionError, UnknownIndexerError
from feeds.id_lists import AmongIds

if TYPE_CHECKING:
    from sqlalchemy import Select

    from feeds.documents import Json

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Keys:
    """The entities of one batch: a key range `(lo, hi]` (either end open when None), or ids from a changelog."""

    lo: int | None = None
    hi: int | None = None
    ids: tuple[int, ...] | None = None

    def match(self, column: Any) -> ColumnElement[bool]:
        """The SQL condition selecting this batch's entities on `column` (an entity-id column)."""
        if self.ids is not None:
            return AmongIds(column, self.ids)
        bounds = [
            c
            for c in (
                None if self.lo is None else column > self.lo,
                None if self.hi is None else column <= self.hi,
            )
            if c is not None
        ]
        if not bounds:
            return column.is_not(None)  # every entity: a NULL id is none
        return and_(true(), *bounds)


@dataclass(frozen=True, slots=True)
class Document:
    """One feed item as built from the source: `data` is the JSON document."""

    entity: int
    id: str
    data: dict[str, Any]
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Watch:
    """A source table whose row changes affect entities of a feed.

    `entity` says which entities a changed row (NEW or OLD in the trigger, written `{row}`) affects:
    - a column of `table` holding the entity id: `"product_id"`;
    - an SQL expression giving one id: `"(SELECT parent_id FROM products WHERE id = {row}.product_id)"`;
    - a query giving many ids, its column named `entity_id`:
      `"SELECT id AS entity_id FROM books WHERE author_id = {row}.id"`.
    NULL ids are ignored.
    """

    table: str
    entity: str

    @property
    def is_query(self) -> bool:
        return self.entity.lstrip().upper().startswith("SELECT")

    def expression(self, row: str) -> str:
        if "{row}" in self.entity:
            return self.entity.replace("{row}", row)
        return f"{row}.{self.entity}"


Builder = Callable[[Connection, Keys], Iterable[Document]]
# A set-based feed's query for one batch: columns `entity`, `id`, `updated_at` and `body` (the
# document as canonical JSON text, see feeds.documents), given the batch and the JSON expressions
# of the database's dialect.
DocumentQuery = Callable[[Keys, "Json"], "Select[Any]"]


@dataclass(frozen=True)
class Feed:
    """A named stream of entities built from source tables."""

    name: str
    indexer_id: str
    title: str
    key_table: str
    # One of the two: a Python builder, or a query that has the database build the documents.
    build: Builder = None  # type: ignore[assignment]
    watches: tuple[Watch, ...] = ()
    key_column: str = "id"
    # Sales feeds are sent by `sales_data_exporter` instead of `saas_data_exporter` in legacy mode.
    sales: bool = False
    description: str = ""
    tags: tuple[str, ...] = field(default=())
    query: DocumentQuery | None = None

    def __post_init__(self) -> None:
        if self.build is None and self.query is None:
            raise FeedDefinitionError(
                f"Feed {self.name!r} has neither build nor query; give it one of them."
            )
        if self.build is None:
            object.__setattr__(self, "build", _builder_of(self.query))
        for label, value in (("name", self.name), ("indexer_id", self.indexer_id)):
            if not _NAME.match(value):
                raise FeedDefinitionError(
                    f"Feed {label} {value!r} is not accepted; use letters, digits and underscores, starting with a letter."
                )
        if not self.watches:
            raise FeedDefinitionError(
                f"Feed {self.name!r} watches no table; name at least its driving table in watches."
            )

    @property
    def tables(self) -> tuple[str, ...]:
        """The source tables the feed depends on, in declaration order."""
        return tuple(dict.fromkeys(w.table for w in self.watches))


def _builder_of(query: DocumentQuery | None) -> Builder:
    """A set-based feed as a Python builder (its documents parsed): for the paths that need one
    document at a time (an entity rebuilt alone, the reconciliation of tests)."""
    assert query is not None

    def build(conn: Connection, keys: Keys) -> Iterator[Document]:
        from feeds.documents import Json

        rows = conn.execute(query(keys, Json(conn.dialect.name)).order_by("entity", "id"))
        for row in rows:
            yield Document(row.entity, row.id, orjson.loads(row.body), row.updated_at)

    return build


class FeedRegistry:
    """The feeds this deployment knows, looked up by feed name or indexer id."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self._feeds: dict[str, Feed] = {}
        by_indexer: dict[str, Feed] = {}
        for feed in feeds:
            if feed.name in self._feeds or feed.indexer_id in by_indexer:
                raise FeedDefinitionError(
                    f"Feed {feed.name!r} ({feed.indexer_id}) is defined twice."
                )
            self._feeds[feed.name] = feed
            by_indexer[feed.indexer_id] = feed
        self._by_indexer = by_indexer

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._feeds)

    def all(self) -> list[Feed]:
        return list(self._feeds.values())

    def names(self) -> list[str]:
        return list(self._feeds)

    def get(self, name: str) -> Feed:
        """A feed by its name or its indexer id."""
        feed = self._feeds.get(name) or self._by_indexer.get(name)
        if feed is None:
            raise UnknownIndexerError([name], self.supported())
        return feed

    def select(self, names: Sequence[str]) -> list[Feed]:
        """The feeds named (all when `names` is empty); every unknown name is refused before any work."""
        if not names:
            return self.all()
        unknown = [n for n in names if n not in self._feeds and n not in self._by_indexer]
        if unknown:
            raise UnknownIndexerError(unknown, self.supported())
        return list(dict.fromkeys(self.get(n) for n in names))

    def supported(self) -> list[str]:
        return list(self._by_indexer)


def load_registry(modules: Sequence[str] = (), builtin: bool = True) -> FeedRegistry:
    """The built-in commerce feeds (unless `builtin` is false) plus `FEEDS` of each module named."""
    feeds: list[Feed] = []
    if builtin:
        from feeds.commerce.feeds import FEEDS as builtin_feeds

        feeds.extend(builtin_feeds)
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"feed_modules names {module_name!r}, which cannot be imported: {exc}."
            ) from None
        declared = getattr(module, "FEEDS", None)
        if not isinstance(declared, (list, tuple)) or not all(
            isinstance(f, Feed) for f in declared
        ):
            raise ConfigError(
                f"feed_modules names {module_name!r}, which has no FEEDS list of feeds.Feed definitions."
            )
        feeds.extend(declared)
    return FeedRegistry(feeds)


class IndexerStatus(StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    WORKING = "working"
    SUSPENDED = "suspended"


class ItemStatus(IntEnum):
    """Export status of a feed item, with the codes Adobe's data exporter stores (SPEC §5); NULL = never sent."""

    SENT = 200
    REJECTED = 400
    RETRYABLE = 2
    APP_ERROR = 0
    SKIPPED = -1


# A stored item in one of these states needs nothing more for its current version.
SETTLED = (ItemStatus.SENT, ItemStatus.REJECTED)


class ExportMode(StrEnum):
    IMMEDIATE = "immediate"
    LEGACY = "legacy"


class IndexerMode(StrEnum):
    REALTIME = "realtime"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class RetryPolicy:
    """When a retryable item is sent again: `backoff_base_s * 2**(attempts-1)`, capped and jittered."""

    backoff_base_s: float = 60
    backoff_max_s: float = 3600
    max_attempts: int = 10


@dataclass(frozen=True)
class FeedPlan:
    """One feed's settings, resolved once by the composition root (config/): what the pipeline reads."""

    destination: str
    batch_size: int = 500
    export_mode: ExportMode = ExportMode.IMMEDIATE
    # Entities read from the source per round; changed items are then sent in `batch_size` batches.
    collect_batch_size: int = 2000
    # Processes sharing a full reindex; None = one per core (max 4) for feeds of 5+ chunks.
    reindex_processes: int | None = None
    # URL templates of an item's record in the source application and in the destination.
    record_url: str | None = None
    destination_url: str | None = None

    @property
    def collect_only(self) -> bool:
        """Legacy mode: a sync only collects into the feed table; the export job sends it."""
        return self.export_mode is ExportMode.LEGACY


class Operation(StrEnum):
    FULL_SYNC = "full_sync"
    PARTIAL_SYNC = "partial_sync"
    REINDEX_INVALID = "reindex_invalid"
    LEGACY_EXPORT = "legacy_export"
    RESEND_FAILED = "resend_failed"
    RESYNC_ERRORS = "resync_errors"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    ERROR = "error"
    CONFIG_ERROR = "config_error"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class StoredItem:
    """What the feed table holds of an item: what a new build is compared with."""

    entity: int
    hash: str
    deleted: bool
    status: int | None = None
    attempts: int = 0
    sent_hash: str | None = None  # the hash the destination last accepted
