"""`api [--host H] [--port P]`: serve the HTTP API and the dashboard with uvicorn."""

from __future__ import annotations

import argparse
from typing import Any

from config.settings import Settings


def register(sub: Any) -> None:
    p = sub.add_parser("api", help="serve the HTTP API and dashboard")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.set_defaults(handler=serve, quiet_logs=False)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from worker.api.app import create_app

    app = create_app(settings)
    print(f"Feedsync API on http://{args.host}:{args.port} (OpenAPI: /docs). Ctrl-C stops it.")
    # Our structlog configuration stays in charge: uvicorn only adds its access log.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=True)
    return 0
