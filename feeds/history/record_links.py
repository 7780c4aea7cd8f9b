"""Links from an item to its record in the source application and in the destination, from the
URL templates set per feed in the TOML file (`record_url`, `destination_url`): `{entity}` is
the entity key in the source, `{id}` the feed item id. Pure: checked once at load, filled when
shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import Formatter
from urllib.parse import quote

from sqlalchemy.engine import Connection

from feeds.context import Context
from feeds.history.read_model import ErrorRow
from feeds.state import feed_items as store
from feeds.urls import http_url_problem

PLACEHOLDERS = {"entity": "the entity key in the source", "id": "the feed item id"}
TEMPLATE_FORM = (
    "an http(s):// URL with {entity} (the entity key in the source) and/or {id} (the feed item "
    "id), such as 'https://shop.example/admin/product/{entity}'"
)


def template_problem(template: str) -> str | None:
    """Why `template` is not a record URL template; None when it is one."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        return f"its braces do not parse ({exc})"
    if not fields:
        return "it has no placeholder"
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS:
            return f"{{{name}}} is not a placeholder"
        if spec or conversion:
            return f"{{{name}}} takes no format or conversion"
    return http_url_problem(template.format(entity="1", id="1"))


def fill(template: str | None, *, item_id: str, entity: int | str | None) -> str | None:
    """The URL of one record, or None when there is no template or it needs a missing key."""
    if template is None:
        return None
    names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    if "entity" in names and entity is None:
        return None
    return template.format(
        entity=quote(str(entity), safe="") if entity is not None else "",
        id=quote(item_id, safe=""),
    )


@dataclass(frozen=True)
class RecordLinks:
    source: str | None = None
    destination: str | None = None


def links(
    record_url: str | None, destination_url: str | None, item_id: str, entity: int | str | None
) -> RecordLinks:
    """Both links of one item (each None when its template is not set)."""
    return RecordLinks(
        fill(record_url, item_id=item_id, entity=entity),
        fill(destination_url, item_id=item_id, entity=entity),
    )


# Each feed's record URL templates: (record_url, destination_url) of its plan.
Templates = Mapping[str, tuple[str | None, str | None]]


def url_templates(ctx: Context) -> dict[str, tuple[str | None, str | None]]:
    """Each feed's record URL templates (source, destination), from its plan."""
    return {
        name: (ctx.plan.feed(name).record_url, ctx.plan.feed(name).destination_url)
        for name in ctx.registry.names()
    }


def record_links(
    conn: Connection, errors: Sequence[ErrorRow], templates: Templates
) -> dict[int, RecordLinks]:
    """The links of each error's record, for the feeds that set URL templates (one lookup of
    entity keys per feed)."""
    found: dict[int, RecordLinks] = {}
    for name in {e.feed for e in errors}:
        record_url, destination_url = templates.get(name, (None, None))
        if record_url is None and destination_url is None:
            continue
        mine = [e for e in errors if e.feed == name]
        keys = store.entity_keys(conn, name, sorted({e.item_id for e in mine}))
        for e in mine:
            # An entity that never built has no item: its error row names the entity itself.
            entity = keys.get(e.item_id) or (int(e.item_id) if e.item_id.isdigit() else None)
            found[e.id] = links(record_url, destination_url, e.item_id, entity)
    return found
