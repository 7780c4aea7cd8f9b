"""Alembic environment: runs against the engine Feedsync hands over (or DATABASE_URL from the CLI)."""

from alembic import context

# Every module that declares tables on Base, so autogenerate compares against all of them: the
# worker's tables in one module, the API's own (keys, rate counters) with the API.
from feeds.state.tables import Base
from worker.api import apikeys  # noqa: F401

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from config.settings import load_settings
        from feeds.state.database import create_db_engine

        engine = create_db_engine(load_settings().database_url)
    with engine.begin() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        context.run_migrations()


run_migrations_online()
