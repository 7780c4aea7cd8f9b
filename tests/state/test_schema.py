"""The migrations and the SQLAlchemy models describe the same schema, on both databases: the next
`alembic revision --autogenerate` proposes nothing it should not (no dropped table or index)."""

from __future__ import annotations

import importlib

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from feeds.state.database import MIGRATIONS_DIR, create_db_engine, upgrade
from feeds.state.tables import Base


def test_the_migrated_schema_is_the_models_schema(db_url: str) -> None:
    # Import env.py's model imports the way autogenerate sees them (env.py itself needs alembic's
    # runtime context): every module that declares tables on Base.
    source = (MIGRATIONS_DIR / "env.py").read_text()
    # `from worker.api import apikeys`; feeds.state.tables (Base's own module) is counted below.
    imports = [
        line.removeprefix("from ").split(" import ", 1)
        for line in source.splitlines()
        if line.startswith(("from feeds", "from worker"))
        and not line.startswith("from feeds.state.tables ")
    ]
    names = {
        f"{package}.{name.strip()}"
        for package, imported in imports
        for name in imported.split("#")[0].split(",")
    }
    for name in names:
        importlib.import_module(name)
    declared = {mapper.class_.__module__ for mapper in Base.registry.mappers}
    assert declared <= names | {"feeds.state.tables"}, "env.py misses a module that declares tables"
    engine = create_db_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == []
