"""`api [--host H] [--port P]`: serve the HTTP API and the dashboard with uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

from config.settings import Settings
from worker.api.listen import base_url, listen


def register(sub: Any) -> None:
    p = sub.add_parser("api", help="serve the HTTP API and dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=port, default=8000, help="port to listen on (default 8000; 0: any free)"
    )
    p.set_defaults(handler=serve, quiet_logs=False)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from worker.api.app import create_app
    from worker.sync_requests import trigger_for

    with listen(args.host, args.port) as listener:  # before the database is opened
        app = create_app(settings, trigger=trigger_for(settings))
        bound = listener.getsockname()[1]
        print(f"Feedsync API on {base_url(args.host, bound)} (OpenAPI: /docs). Ctrl-C stops it.")
        # Our structlog configuration stays in charge: uvicorn only adds its access log.
        config = uvicorn.Config(app, host=args.host, port=bound, log_config=None, access_log=True)
        uvicorn.Server(config).run(sockets=[listener])
    return 0


def port(text: str) -> int:
    """An argparse type: a TCP port number, 0 for any free one."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port; accepted: a number from 1 to 65535, or 0 for any free port"
        )
    return value
