"""Documents built by the database: SQL expressions that render values as canonical JSON text.

A set-based feed (`Feed(query=...)`) selects, per item, its entity, id, `updated_at` and its
document as JSON text. The expressions here write the very bytes `diff.canonical` writes for the
same document in Python (sorted keys, no whitespace, orjson's string escapes, floats with a
fraction), on PostgreSQL and on SQLite alike: a document hashes the same whichever side built it,
so a feed can move between a Python builder and a query without resending anything.

    j = Json(dialect)
    select(
        p.id.label("entity"), j.text_of(p.id).label("id"), p.updated_at.label("updated_at"),
        j.object({"id": j.integer(p.id), "name": j.string(p.name)}).label("body"),
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import orjson
from sqlalchemy import (
    Float,
    LargeBinary,
    Select,
    String,
    Subquery,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

Expression = ColumnElement[Any]


# A byte JSON text never holds raw: written before NaN or Infinity, which JSON cannot carry, so
# that Python finds such a number in a body with one byte search (diff.unexportable_reason).
NOT_FINITE_BYTE = b"\x01"


def _sql_text(value: str) -> ColumnElement[str]:
    """A constant SQL string (quotes doubled), inlined so that statements stay cacheable."""
    return literal_column("'" + value.replace("'", "''") + "'", String)


def _concat(parts: Sequence[ColumnElement[str]]) -> ColumnElement[str]:
    return reduce(lambda a, b: a.concat(b), parts)


class Json:
    """Canonical-JSON expressions for one SQL dialect (`postgresql` or `sqlite`)."""

    def __init__(self, dialect: str) -> None:
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(
                f"documents built by the database need PostgreSQL or SQLite, not {dialect}"
            )
        self.dialect = dialect
        self.pg = dialect == "postgresql"

    # --- scalars: each renders SQL NULL as `null` --------------------------------------------

    def string(self, value: Expression) -> ColumnElement[str]:
        if self.pg:
            return func.coalesce(cast(func.to_json(value), String), _sql_text("null"))
        return func.json_quote(value)  # json_quote(NULL) is 'null'

    def integer(self, value: Expression) -> ColumnElement[str]:
        return func.coalesce(cast(value, String), _sql_text("null"))

    def number(self, value: Expression) -> ColumnElement[str]:
        """A float as Python writes it: `3.0`, `19.9` (exact for decimals of up to 15 digits)."""
        as_float = cast(value, Float)
        marker = literal_column("chr(1)" if self.pg else "char(1)", String)
        if self.pg:
            # float8 text is the shortest exact form, like Python's, but `3` where Python writes `3.0`.
            whole = case((as_float == func.trunc(as_float), _sql_text(".0")), else_=_sql_text(""))
            non_finite = as_float.in_(
                [literal_column(f"'{v}'::float8") for v in ("NaN", "Infinity", "-Infinity")]
            )
            rendered = case(
                (non_finite, marker.concat(cast(as_float, String))),
                else_=cast(as_float, String).concat(whole),
            )
        else:
            # SQLite writes REAL 3 as '3.0'; a NUMERIC column keeps what is not a number as text.
            rendered = case(
                (func.typeof(value) == "text", marker.concat(_sql_text("NaN"))),
                (
                    func.abs(as_float) > 1.7976931348623157e308,
                    marker.concat(
                        case((as_float > 0, _sql_text("Infinity")), else_=_sql_text("-Infinity"))
                    ),
                ),
                else_=cast(as_float, String),
            )
        return func.coalesce(rendered, _sql_text("null"))

    def boolean(self, value: Expression) -> ColumnElement[str]:
        truth = value if self.pg else value != 0
        return case(
            (value.is_(None), _sql_text("null")),
            (truth, _sql_text("true")),
            else_=_sql_text("false"),
        )

    def timestamp(self, value: Expression) -> ColumnElement[str]:
        """ISO 8601 to the second with a Z (values are UTC): `"2026-11-22T10:00:00Z"`."""
        if self.pg:
            text = func.to_char(value, _sql_text('"\\""YYYY-MM-DD"T"HH24:MI:SS"Z\\""'))
        else:
            text = func.strftime(_sql_text('"%Y-%m-%dT%H:%M:%SZ"'), value)
        return func.coalesce(text, _sql_text("null"))

    def text_of(self, value: Expression) -> ColumnElement[str]:
        """A value as SQL text (an item id made of a key), not as JSON."""
        return cast(value, String)

    # --- composites -----------------------------------------------------------------------------

    def object(self, fields: Mapping[str, ColumnElement[str]]) -> ColumnElement[str]:
        """`{"key":value,...}` with the keys sorted; each value is one of the JSON expressions."""
        parts: list[ColumnElement[str]] = []
        for number, key in enumerate(sorted(fields)):
            prefix = ("{" if number == 0 else ",") + orjson.dumps(key).decode() + ":"
            parts += [_sql_text(prefix), fields[key]]
        parts.append(_sql_text("}" if fields else "{}"))
        return _concat(parts)

    def entry(self, key: Expression, value: ColumnElement[str]) -> ColumnElement[str]:
        """One `"key":value` of an object aggregated with `grouped(..., brackets="{}")`."""
        return self.string(key).concat(_sql_text(":")).concat(value)

    def grouped(
        self,
        query: Select[Any],
        key: Expression,
        element: ColumnElement[str],
        order_by: Sequence[Expression],
        brackets: str = "[]",
    ) -> Subquery:
        """Per `key`, the JSON array (or object of `entry` elements, brackets "{}") of `element`
        over the rows of `query` (its FROM and WHERE) in `order_by` order: columns `key`, `json`.
        Join it to the entity rows and wrap the column in `or_empty`: an entity with no row has none.
        """
        opening, closing = _sql_text(brackets[0]), _sql_text(brackets[1])
        comma = _sql_text(",")
        if self.pg:
            aggregate = func.string_agg(element, aggregate_order_by(comma, *order_by))
            grouped = query.with_only_columns(
                key.label("key"), opening.concat(aggregate).concat(closing).label("json")
            ).group_by(key)
        else:
            # SQLite's group_concat keeps the order of its input rows: feed it ordered rows.
            rows = (
                query.with_only_columns(key.label("key"), element.label("element"))
                .order_by(key, *order_by)
                .subquery()
            )
            aggregate = func.group_concat(rows.c.element, comma)
            grouped = select(
                rows.c.key, opening.concat(aggregate).concat(closing).label("json")
            ).group_by(rows.c.key)
        return grouped.subquery()

    def sort_key(self, value: Expression) -> Expression:
        """Text ordered as Python orders str (code points), as sorted JSON keys are."""
        return value.collate("C") if self.pg else value

    def greatest(self, first: Expression, second: Expression) -> Expression:
        """The later of two non-null values (timestamps: the document changed when either did)."""
        name = func.greatest if self.pg else func.max
        return name(first, second, type_=first.type)

    def or_empty(self, value: Expression, empty: str = "[]") -> ColumnElement[str]:
        return func.coalesce(value, _sql_text(empty))


def body_bytes(dialect: str, body: Expression) -> Expression:
    """The JSON text as bytes to the driver: spliced into a request body as they come."""
    if dialect == "postgresql":
        return func.convert_to(body, _sql_text("UTF8"))
    return cast(body, LargeBinary)


def content_hash(dialect: str, body: Expression) -> ColumnElement[bytes]:
    """The item hash of a JSON text, computed by the database: the 16 bytes of its md5, as the
    feed table stores them (see `diff.digest`)."""
    if dialect == "postgresql":
        return func.decode(func.md5(body), _sql_text("hex"), type_=LargeBinary)
    return func.md5_digest(
        body, type_=LargeBinary
    )  # registered on SQLite connections (state.database)
