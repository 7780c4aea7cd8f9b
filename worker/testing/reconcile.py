"""Reconciliation: does the destination hold, for every item, what a fresh build of the source gives
now? The end of every resilience scenario, and of the benchmarks that inject faults.

It believes nothing Feedsync recorded about what it sent: it builds the source again, reads what
the destination accepted, and explains every difference by a cause that is still there (the
destination rejects the item, with an open sync error; the document cannot be built, with an
application error) or reports it. It also reports feed-table states the outcome contradicts
(an item left failed whose cause is gone, a rejection without an open error), runs left `running`,
and versions the destination received more than once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from feeds.context import Context
from feeds.definitions import Feed, ItemStatus, RunStatus
from feeds.pipeline.build import build_documents
from feeds.pipeline.diff import NULL, UnexportableValue, canonical, digest
from feeds.pipeline.indexer import entity_batches
from feeds.state.tables import items, sync_errors, sync_runs

# What the destination holds of a feed: item id → (hash, deleted) of the last version it accepted.
Holdings = Callable[[str], Mapping[str, tuple[str, bool]]]
Duplicates = Callable[[str], int]

DELETED_HASH = digest(NULL)


@dataclass
class FeedReconciliation:
    feed: str
    live: int = 0  # items a fresh build of the source gives
    matched: int = 0  # of them, held by the destination with the same hash
    deleted: int = 0  # items gone from the source that the destination holds as deleted
    missing: list[str] = field(default_factory=list)  # live, not held (or stale), no cause left
    not_deleted: list[str] = field(default_factory=list)  # gone from the source, held as live
    waiting: dict[str, str] = field(default_factory=dict)  # differs, and why: its cause remains
    stuck: list[str] = field(default_factory=list)  # feed-table state the outcome contradicts
    unrecorded: list[str] = field(default_factory=list)  # failed with no open sync error
    duplicates: int = 0  # versions the destination accepted more than once

    def problems(self) -> list[str]:
        found = []
        for label, ids in (
            ("not at the destination (or an older version)", self.missing),
            ("deleted from the source but live at the destination", self.not_deleted),
            ("left in a failed state whose cause is gone", self.stuck),
            ("failed without an open sync error of its category", self.unrecorded),
        ):
            if ids:
                shown = ", ".join(sorted(ids)[:10]) + (" …" if len(ids) > 10 else "")
                found.append(f"{self.feed}: {len(ids)} items {label}: {shown}")
        return found


@dataclass
class Reconciliation:
    feeds: dict[str, FeedReconciliation]
    running: list[str]  # ids of runs still `running`

    def problems(self) -> list[str]:
        found = [p for feed in self.feeds.values() for p in feed.problems()]
        if self.running:
            found.append(f"{len(self.running)} runs left running: {', '.join(self.running)}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    @property
    def duplicates(self) -> int:
        return sum(feed.duplicates for feed in self.feeds.values())

    def summary(self) -> str:
        parts = [
            f"{f.feed} {f.matched}/{f.live} held, {f.deleted} deleted, {len(f.waiting)} waiting, "
            f"{f.duplicates} duplicates"
            for f in self.feeds.values()
        ]
        return "; ".join(parts) + ("" if self.ok else " — " + " | ".join(self.problems()))


def reconcile(
    ctx: Context,
    holdings: Holdings,
    duplicates: Duplicates | None = None,
    feeds: list[str] | None = None,
) -> Reconciliation:
    """Compare what the destination holds with a fresh build of every feed (or of `feeds`)."""
    chosen = [ctx.registry.get(name) for name in feeds] if feeds else list(ctx.registry)
    with ctx.db.connect() as conn:
        running = list(
            conn.scalars(select(sync_runs.c.id).where(sync_runs.c.status == RunStatus.RUNNING))
        )
    return Reconciliation(
        {feed.name: _feed(ctx, feed, holdings(feed.name), duplicates) for feed in chosen},
        running,
    )


def _feed(
    ctx: Context,
    feed: Feed,
    held: Mapping[str, tuple[str, bool]],
    duplicates: Duplicates | None,
) -> FeedReconciliation:
    result = FeedReconciliation(feed.name, duplicates=duplicates(feed.name) if duplicates else 0)
    built, unbuildable = _fresh_build(ctx, feed)
    rows, errors, categories = _recorded(ctx, feed)
    result.live = len(built)
    for item_id, hashed in built.items():
        status = rows.get(item_id, (None, None))[0]
        if held.get(item_id) == (hashed, False):
            result.matched += 1
            if status != ItemStatus.SENT:
                result.stuck.append(item_id)  # held, yet recorded as not settled
        elif status == ItemStatus.REJECTED and item_id in errors:
            result.waiting[item_id] = f"rejected: {errors[item_id]}"
        else:
            result.missing.append(item_id)
    for item_id, (status, _) in rows.items():
        if item_id in built:
            continue
        entity_reason = unbuildable.get(item_id)
        if entity_reason is not None:
            result.waiting[item_id] = entity_reason
            if status != ItemStatus.APP_ERROR:
                result.stuck.append(item_id)
            if item_id not in errors and not errors.get(f"entity:{rows[item_id][1]}"):
                result.unrecorded.append(item_id)
        elif held.get(item_id, (DELETED_HASH, True))[1]:
            result.deleted += 1
            if status != ItemStatus.SENT:
                result.stuck.append(item_id)  # gone at the destination, yet recorded as not settled
        elif status == ItemStatus.REJECTED and item_id in errors:
            result.waiting[item_id] = f"deletion rejected: {errors[item_id]}"
        else:
            result.not_deleted.append(item_id)
    for item_id, (status, _) in rows.items():
        if status == ItemStatus.REJECTED and errors.get(item_id) != categories.get(item_id):
            result.unrecorded.append(item_id)  # no open error, or one of another category
    for key, reason in unbuildable.items():
        if key.startswith("entity:") and key not in errors:
            result.unrecorded.append(key)  # an entity that never built, with no error row
        result.waiting.setdefault(key, reason)
    return result


def _fresh_build(ctx: Context, feed: Feed) -> tuple[dict[str, str], dict[str, str]]:
    """Every item a build of the source gives now with its hash; and the items (by id, or by
    `entity:<key>` for an entity none of whose items could be built) that cannot be, with why."""
    built: dict[str, str] = {}
    unbuildable: dict[str, str] = {}
    size = ctx.plan.feed(feed.name).collect_batch_size
    for batch in entity_batches(ctx, feed, size):
        documents, broken = build_documents(ctx, feed, batch.keys)
        for entity, message in broken.items():
            unbuildable[f"entity:{entity}"] = f"cannot be built: {message}"
        for doc in documents:
            if doc.id in built or doc.id in unbuildable:
                continue
            try:
                built[doc.id] = digest(canonical(doc.data))
            except UnexportableValue as exc:
                unbuildable[doc.id] = f"cannot be exported: {exc}"
    # Stored items of a broken entity are not deletions: name them by item id too.
    if any(key.startswith("entity:") for key in unbuildable):
        with ctx.db.connect() as conn:
            for item_id, entity in conn.execute(
                select(items.c.id, items.c.entity_key).where(items.c.feed == feed.name)
            ):
                reason = unbuildable.get(f"entity:{entity}")
                if reason is not None and item_id not in built:
                    unbuildable.setdefault(item_id, reason)
    return built, unbuildable


def _recorded(
    ctx: Context, feed: Feed
) -> tuple[dict[str, tuple[int | None, int]], dict[str, str], dict[str, str | None]]:
    """The feed table (item id → status, entity), the open sync errors (item id → category), and
    the category each rejected item was recorded with (item id → category)."""
    rows: dict[str, tuple[int | None, int]] = {}
    categories: dict[str, str | None] = {}
    with ctx.db.connect() as conn:
        for item_id, status, entity, category in conn.execute(
            select(items.c.id, items.c.status, items.c.entity_key, items.c.error_category).where(
                items.c.feed == feed.name
            )
        ):
            rows[item_id] = (status, entity)
            if status == ItemStatus.REJECTED:
                categories[item_id] = category
        errors = {
            item_id: category
            for item_id, category in conn.execute(
                select(sync_errors.c.item_id, sync_errors.c.category).where(
                    sync_errors.c.feed == feed.name, sync_errors.c.resolved.is_(False)
                )
            )
        }
    # An error of an entity that could not be built is recorded under its entity key.
    errors.update({f"entity:{key}": category for key, category in list(errors.items())})
    return rows, errors, categories
