"""A feed on a schema without the constraints the sample catalog has, as an application's legacy
tables may be: the driving table's key and the item ids come from nullable, non-unique columns."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Column, Float, Integer, MetaData, Table, Text, select
from sqlalchemy.engine import Connection

from feeds.definitions import Document, Feed, Keys, Watch

metadata = MetaData()
parts = Table(
    "parts",
    metadata,
    Column("row_no", Integer, primary_key=True),
    Column("part_no", Integer, nullable=True),  # the feed's key: nullable, no constraint
    Column("code", Text, nullable=True),  # the item id: nullable, not unique, any length
    Column("name", Text, nullable=False),
    Column("price", Float, nullable=True),
)


def build_parts(conn: Connection, keys: Keys) -> Iterator[Document]:
    query = (
        select(parts.c.part_no, parts.c.code, parts.c.name, parts.c.price)
        .where(keys.match(parts.c.part_no))
        .order_by(parts.c.part_no, parts.c.row_no)
    )
    for part_no, code, name, price in conn.execute(query):
        yield Document(entity=part_no, id=code, data={"name": name, "price": price})


FEEDS = [
    Feed(
        name="parts",
        indexer_id="legacy_parts",
        title="Parts Feed",
        key_table="parts",
        key_column="part_no",
        build=build_parts,
        watches=(Watch("parts", "part_no"),),
    )
]
