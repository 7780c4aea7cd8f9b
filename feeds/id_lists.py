"""`column IN (ids)` with the ids as one parameter, not one parameter per id.

A partial sync of 1,000 changed entities names them in three places of its compare statement: as
one parameter each, psycopg spent 135 ms parsing the 3,000 placeholders of a single statement, and
every batch size was another statement to plan. As one parameter the statement text is the same
for every batch: an array on PostgreSQL (`= ANY`), a JSON array read by `json_each` on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Boolean, String, TypeDecorator, bindparam
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class _IdList(TypeDecorator[Sequence[int]]):
    """A list of integer ids: an array to PostgreSQL, JSON text to SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(BIGINT))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Sequence[int] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return None if value is None else list(value)
        return orjson.dumps(list(value)).decode()


class AmongIds(ColumnElement[bool]):
    """`column` is one of `ids`."""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a predicate as it stands: no "= 1" where booleans are integers
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("ids", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], ids: Sequence[int]) -> None:
        self.column = column
        self.ids = bindparam(None, list(ids), type_=_IdList())


@compiles(AmongIds)
def _among_ids(element: AmongIds, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(element.ids, **kw)}))"


@compiles(AmongIds, "postgresql")
def _among_ids_pg(element: AmongIds, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} = ANY(CAST({compiler.process(element.ids, **kw)} AS BIGINT[]))"
