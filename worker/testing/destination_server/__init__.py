"""A real destination for tests and benchmarks: protocol v1 (SPEC §5) over HTTP, with switchable faults.

In-process: `with DestinationServer() as dest: httpx.post(f"{dest.url}/feeds/products", ...)`.
As a process: `python -m worker.testing.destination_server --port 0 --print-port` prints `PORT <n>` once
listening and serves until SIGTERM/SIGINT; `GET /_stats` then reports what it received, and
`POST /_heal` clears the faults its command line set.
Standard library and orjson only, so it is fast and has no moving parts.
"""

from worker.testing.destination_server.faults import ItemPredicate
from worker.testing.destination_server.protocol import (
    ACCEPTED_AT_PATH,
    FEEDS_PREFIX,
    HEAL_PATH,
    HOLDINGS_PATH,
    MALFORMED_BODY,
    RESET,
    STATS_PATH,
    Request,
)
from worker.testing.destination_server.server import DestinationServer

__all__ = [
    "ACCEPTED_AT_PATH",
    "FEEDS_PREFIX",
    "HEAL_PATH",
    "HOLDINGS_PATH",
    "MALFORMED_BODY",
    "RESET",
    "STATS_PATH",
    "DestinationServer",
    "ItemPredicate",
    "Request",
]
