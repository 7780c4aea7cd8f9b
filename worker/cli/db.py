"""`db:upgrade`: apply the worker database migrations."""

from __future__ import annotations

import argparse
from typing import Any

from config.settings import Settings
from feeds.state import database


def register(sub: Any) -> None:
    p = sub.add_parser("db:upgrade", help="apply database migrations")
    p.set_defaults(handler=upgrade)


def upgrade(args: argparse.Namespace, settings: Settings) -> int:
    engine = database.connect(settings.database_url, "DATABASE_URL")
    before, after = database.upgrade(engine)
    if before == after:
        print(f"Database schema is up to date (revision {after}).")
    else:
        print(f"Database schema upgraded from {before or 'empty'} to revision {after}.")
    return 0
