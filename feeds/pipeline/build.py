"""Building a batch's documents from the source: a feed's builder or query, with the checks an item id must pass and the entities that could not be built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import structlog
from sqlalchemy import column, select, table, type_coerce
from sqlalchemy.exc import DBAPIError

from feeds.context import Context
from feeds.definitions import Document, Feed, Keys, StoredItem
from feeds.documents import Json, body_bytes, content_hash
from feeds.errors import one_line
from feeds.pipeline.diff import Built
from feeds.state import feed_items as store
from feeds.state.tables import Digest

log = structlog.get_logger("feeds.pipeline.build")
D = TypeVar("D", Document, Built)


def _built_at_source(ctx: Context, feed: Feed, keys: Keys) -> list[Built] | None:
    """A set-based feed's items built and hashed by the source database (None when the query
    fails: the builder then goes entity by entity)."""
    assert feed.query is not None
    try:
        with ctx.source.connect() as src:
            dialect = src.dialect.name
            documents = feed.query(keys, Json(dialect)).subquery()
            query = select(
                documents.c.entity,
                documents.c.id,
                documents.c.updated_at,
                body_bytes(dialect, documents.c.body),
                type_coerce(content_hash(dialect, documents.c.body), Digest()),
            ).order_by(documents.c.entity, documents.c.id)
            return [Built(*row) for row in src.execute(query)]
    except DBAPIError as exc:
        log.warning("build.failed", feed=feed.name, error=one_line(exc), retry="entity by entity")
        return None


def build_documents(
    ctx: Context, feed: Feed, keys: Keys, stored: Mapping[str, StoredItem] | None = None
) -> tuple[list[Document], dict[int, str]]:
    """The batch's documents, and the entities whose document could not be built (with the error).

    A builder that fails on the batch is retried entity by entity, so one bad row costs its own
    entity, not the batch, and is reported rather than retried forever. So does a document whose
    item id cannot be sent or recorded, or is one another entity has (see `_usable_ids`).
    `stored`: the feed-table rows of the batch's entities, when the caller has them already.
    """
    documents, broken = _build(ctx, feed, keys)
    if stored is None:
        with ctx.db.connect() as conn:
            stored = store.stored_items(conn, feed.name, keys)
    return _usable_ids(ctx, feed, keys, documents, broken, stored)


# The feed table's item id column holds this many characters.
MAX_ITEM_ID = 255


def _usable_ids(
    ctx: Context,
    feed: Feed,
    keys: Keys,
    documents: list[D],
    broken: dict[int, str],
    stored: Mapping[str, StoredItem],
) -> tuple[list[D], dict[int, str]]:
    """Leave out, as broken, the entities with an item id that is not a non-empty string of at most
    MAX_ITEM_ID characters, or that another entity builds too. Of the entities building one id,
    the one the feed table records it for keeps it while it still builds it; otherwise the first.
    """
    ids = [doc.id for doc in documents]
    # The ids known to the feed table for other entities: only an id new to the batch's entities
    # (rare but in a first sync) may be another entity's.
    outside = _owners(ctx, feed, [i for i in ids if isinstance(i, str) and i not in stored])
    if not outside and _plain(ids):
        return documents, broken  # the usual batch: valid ids, each built once, none elsewhere
    bad: dict[int, str] = {}
    claims: dict[str, list[int]] = {}
    for doc in documents:
        if not isinstance(doc.id, str) or not doc.id or len(doc.id) > MAX_ITEM_ID:
            shown = repr(doc.id)
            if isinstance(doc.id, str) and len(doc.id) > 40:
                shown = f"{doc.id[:40]!r}… ({len(doc.id)} characters)"
            bad.setdefault(
                doc.entity,
                f"the builder gave the item id {shown}: item ids are non-empty strings "
                f"of at most {MAX_ITEM_ID} characters",
            )
        elif doc.entity not in (claimants := claims.setdefault(doc.id, [])):
            claimants.append(doc.entity)
    owners = {item_id: item.entity for item_id, item in stored.items()}
    owners.update(outside)
    for item_id, claimants in claims.items():
        owner = owners.get(item_id)
        if owner in claimants or (
            owner is not None and _still_builds(ctx, feed, keys, owner, item_id)
        ):
            winner = owner
        else:
            winner = claimants[0]
        for entity in claimants:
            if entity != winner:
                bad.setdefault(
                    entity,
                    f"item id {item_id!r} is also built for entity {winner}: item ids must be unique",
                )
    if not bad:
        return documents, broken
    return [d for d in documents if d.entity not in bad], {**broken, **bad}


def _plain(ids: Sequence[object]) -> bool:
    """Whether every id is a string of 1 to MAX_ITEM_ID characters, and none repeats."""
    if not ids:
        return True
    if not all(type(i) is str for i in ids):
        return False
    lengths = [len(i) for i in ids]  # type: ignore[arg-type]
    return min(lengths) > 0 and max(lengths) <= MAX_ITEM_ID and len(set(ids)) == len(ids)


def _owners(ctx: Context, feed: Feed, wanted: Sequence[str]) -> dict[str, int]:
    """The entity the feed table records each of these item ids for (the ids it knows)."""
    if not wanted:
        return {}
    with ctx.db.connect() as conn:
        return store.entity_keys(conn, feed.name, wanted)


def _still_builds(ctx: Context, feed: Feed, keys: Keys, entity: int, item_id: str) -> bool:
    """Whether `entity`, outside the batch, still builds `item_id` (an entity of the batch does
    not, or it would be among its claimants; one that cannot be built now does not either)."""
    if keys.ids is not None and entity in keys.ids:
        return False
    if (
        keys.ids is None
        and (keys.lo is None or entity > keys.lo)
        and (keys.hi is None or entity <= keys.hi)
    ):
        return False
    try:
        with ctx.source.connect() as src:
            return any(doc.id == item_id for doc in feed.build(src, Keys(ids=(entity,))))
    except Exception:  # it will be reported as broken when its own batch is built
        return False


def _build(ctx: Context, feed: Feed, keys: Keys) -> tuple[list[Document], dict[int, str]]:
    try:
        with ctx.source.connect() as src:
            return list(feed.build(src, keys)), {}
    except Exception as exc:
        log.warning(
            "build.failed",
            feed=feed.name,
            error=one_line(exc),
            retry="entity by entity",
        )
    documents: list[Document] = []
    broken: dict[int, str] = {}
    for entity in entity_ids(ctx, feed, keys):
        try:
            with ctx.source.connect() as src:
                documents.extend(feed.build(src, Keys(ids=(entity,))))
        except Exception as exc:  # recorded below as an application error of this entity
            broken[entity] = one_line(exc)[:2000]
    return documents, broken


def entity_ids(ctx: Context, feed: Feed, keys: Keys) -> list[int]:
    if keys.ids is not None:
        return list(keys.ids)
    key = table(feed.key_table, column(feed.key_column)).c[feed.key_column]
    with ctx.source.connect() as src:
        return list(src.scalars(select(key).where(keys.match(key)).order_by(key)))
