"""Alembic environment: runs against the engine Feedsync hands over (or DATABASE_URL from the CLI)."""

from alembic import context

# Every module that declares tables on Base, so autogenerate compares against all of them.
from feeds import apikeys, budget, job_runs, notifications, resync_ranges, runs  # noqa: F401
from feeds.export import pause  # noqa: F401
from feeds.store import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from config.settings import load_settings
        from feeds.database import create_db_engine

        engine = create_db_engine(load_settings().database_url)
    with engine.begin() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        context.run_migrations()


run_migrations_online()
