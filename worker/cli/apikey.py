"""`apikey:create`, `apikey:list`, `apikey:revoke`: the keys of the HTTP API (stored hashed)."""

from __future__ import annotations

import argparse
from typing import Any

from config.settings import Settings
from feeds.state import database
from worker.api import apikeys
from worker.api.apikeys import Permission
from worker.cli.table import render


def register(sub: Any) -> None:
    accepted = ", ".join(p.value for p in Permission)
    p = sub.add_parser("apikey:create", help="store a new API key and print it once")
    p.add_argument("--name", required=True, help="who or what uses the key, e.g. dashboard")
    p.add_argument(
        "--permission",
        action="append",
        required=True,
        metavar="P",
        help=f"repeat for several; one of: {accepted}",
    )
    p.set_defaults(handler=create)
    p = sub.add_parser("apikey:list", help="the API keys (never their secrets)")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.set_defaults(handler=list_command)
    p = sub.add_parser("apikey:revoke", help="revoke an API key for good")
    p.add_argument("id", type=int, help="the key id shown by apikey:list")
    p.set_defaults(handler=revoke)


def _engine(settings: Settings) -> Any:
    engine = database.connect(settings.database_url, "DATABASE_URL")
    database.upgrade(engine)
    return engine


def create(args: argparse.Namespace, settings: Settings) -> int:
    key, raw = apikeys.create_key(_engine(settings), args.name, args.permission)
    print(
        f"API key {key.id} '{key.name}' created with {', '.join(sorted(key.permissions))}. "
        "Keep it now, it is not shown again:"
    )
    print(raw)
    return 0


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    keys = apikeys.list_keys(_engine(settings), include_revoked=args.all)
    headers = ["ID", "Name", "Key", "Permissions", "Created", "Last used", "Revoked"]
    rows = [
        [
            k.id,
            k.name,
            f"{k.prefix}…",
            " ".join(sorted(k.permissions)),
            _time(k.created_at),
            _time(k.last_used_at),
            _time(k.revoked_at),
        ]
        for k in keys
    ]
    print(render(headers, rows))
    return 0


def revoke(args: argparse.Namespace, settings: Settings) -> int:
    key = apikeys.revoke_key(_engine(settings), args.id)
    print(f"API key {key.id} '{key.name}' has been revoked.")
    return 0


def _time(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
