"""Error details as HubSpot's sync health shows them: the errors of a picklist or property
category grouped by the field the destination named, and, for association errors, the records
each missing associated record holds back. Read from the `field` and `value` the destination
gave in its rejections (see `feeds.export.protocol.named_field`)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as attribute
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from feeds.export.protocol import ErrorCategory
from feeds.state.tables import sync_errors

BY_FIELD = frozenset(
    {ErrorCategory.PICKLISTS, ErrorCategory.PROPERTY_MAPPINGS, ErrorCategory.PROPERTY_VALUES}
)
MAX_GROUPS = 20
ITEMS_SHOWN = 100  # the records listed per group (the CSV export has them all)
VALUES_SHOWN = 5


@dataclass(frozen=True)
class ErrorGroup:
    """Current errors of one category that name the same field (and, for associations, the same
    missing record)."""

    field: str | None  # None: the destination named no field
    value: str | None  # associations: the associated record the destination does not have
    errors: int
    records: int
    item_ids: list[str] = attribute(
        default_factory=list
    )  # associations: newest first, ≤ ITEMS_SHOWN
    values: list[str] = attribute(
        default_factory=list
    )  # by field: rejected values, up to VALUES_SHOWN


def groups(conn: Connection, category: str, feed: str | None = None) -> list[ErrorGroup]:
    """The current errors of `category` grouped by field (picklists, property mappings and
    values) or by missing associated record (associations), the largest group first; [] for
    the other categories."""
    c = sync_errors.c
    if category == ErrorCategory.ASSOCIATIONS:
        keys = [c.field, c.value]
    elif category in BY_FIELD:
        keys = [c.field]
    else:
        return []
    current = [c.resolved.is_(False), c.category == category]
    if feed is not None:
        current.append(c.feed == feed)
    # When the destination named nothing, one group of everything says nothing: skip the
    # grouping (the probe stops at the first named error).
    named = select(c.id).where(*current, or_(c.field.is_not(None), c.value.is_not(None)))
    if conn.execute(named.limit(1)).first() is None:
        return []
    errors = func.count().label("errors")
    rows = conn.execute(
        select(*keys, errors, func.count(func.distinct(c.item_id)))
        .where(*current)
        .group_by(*keys)
        .order_by(errors.desc(), *keys)
        .limit(MAX_GROUPS)
    ).all()
    found = []
    for row in rows:
        name, value = row[0], row[1] if len(keys) == 2 else None
        same = [*current, _is(c.field, name)]
        if len(keys) == 2:
            same.append(_is(c.value, value))
        items: list[str] = []
        if len(keys) == 2:  # the records held back are listed for associations only
            newest = select(c.item_id).where(*same).order_by(c.last_seen.desc(), c.id.desc())
            items = list(dict.fromkeys(conn.scalars(newest.limit(ITEMS_SHOWN * 2))))
            items = items[:ITEMS_SHOWN]
        values: list[str] = []
        if len(keys) == 1 and name is not None:
            values = [
                v
                for v in conn.scalars(
                    select(c.value)
                    .where(*same, c.value.is_not(None))
                    .distinct()
                    .limit(VALUES_SHOWN)
                )
                if v is not None
            ]
        found.append(ErrorGroup(name, value, int(row[-2]), int(row[-1]), items, sorted(values)))
    return found


def _is(column: ColumnElement[Any], value: str | None) -> ColumnElement[bool]:
    """`column = value`, or `column IS NULL` for the errors that named nothing."""
    return column.is_(None) if value is None else column == value
