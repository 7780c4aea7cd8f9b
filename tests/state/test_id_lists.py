"""A batch of entity ids is one statement parameter on both databases: any number of ids (past
SQLite's 32,766 parameters per statement), none, and the same statement text for every size."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Column, Engine, MetaData, Table, func, select

from feeds.definitions import Keys
from feeds.state.database import create_db_engine

metadata = MetaData()
entities = Table("entities", metadata, Column("id", BigInteger, primary_key=True))


def sql_of(engine: Engine, ids: tuple[int, ...]) -> str:
    """The statement text as sent, expanded lists included."""
    query = select(entities.c.id).where(Keys(ids=ids).match(entities.c.id))
    return str(query.compile(engine, compile_kwargs={"render_postcompile": True}))


@pytest.mark.parametrize("wanted", [[], [7], [n for n in range(1, 50_001) if n % 5]])
def test_keys_of_ids_select_exactly_those_entities(db_url: str, wanted: list[int]) -> None:
    engine = create_db_engine(db_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(entities.insert(), [{"id": n} for n in range(1, 50_001)])
        query = select(entities.c.id).where(Keys(ids=tuple(wanted)).match(entities.c.id))
        assert sorted(conn.scalars(query)) == wanted
        count = select(func.count()).where(Keys(ids=(10**12, 3)).match(entities.c.id))
        assert conn.scalar(count.select_from(entities)) == 1
    assert sql_of(engine, (1,)) == sql_of(engine, (1, 2, 3))
    engine.dispose()
