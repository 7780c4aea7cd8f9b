"""`python -m worker.testing.destination_server`: serve until SIGTERM or SIGINT, with the faults
the command line sets."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from worker.testing.destination_server.protocol import ACCEPTED_AT_PATH
from worker.testing.destination_server.server import DestinationServer

DESCRIPTION = "A real destination for tests and benchmarks: protocol v1 (SPEC §5) over HTTP, with switchable faults."


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = _arguments().parse_args(argv)
    destination = DestinationServer(
        host=args.host,
        port=args.port,
        token=args.token,
        daily_limit=args.daily_limit,
        keep_items=args.keep_items,
        verbose=args.verbose,
        record_times=args.record_times,
    )
    if args.fail_ratio:
        destination.fail_ratio(args.fail_ratio, status=args.fail_status, seed=args.seed)
    if args.reject_ratio:
        destination.reject_ratio(args.reject_ratio, code=args.reject_code, seed=args.seed)
    if args.max_items is not None:
        destination.too_large_over(args.max_items)
    if args.rate_limit_ratio:
        forms = {"seconds": (False,), "date": (True,), "both": (False, True)}[args.retry_after_form]
        destination.rate_limit_ratio(
            args.rate_limit_ratio, args.retry_after, forms=forms, seed=args.seed
        )
    if args.slow_ratio:
        destination.slow_ratio(args.slow_ratio, args.slow_seconds, seed=args.seed)
    if args.malformed_ratio:
        destination.malformed_ratio(args.malformed_ratio, seed=args.seed)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    destination.start()
    if args.print_port:
        print(f"PORT {destination.port}", flush=True)
    if not args.quiet:
        print(
            f"destination protocol v1 listening on {destination.url}", file=sys.stderr, flush=True
        )
    stop.wait()
    destination.stop()
    if not args.quiet:
        stats = destination.stats()
        deliveries = sum(stats["deliveries"].values())
        print(f"served {stats['requests']} requests, {deliveries} item deliveries", file=sys.stderr)
    return 0


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.testing.destination_server", description=DESCRIPTION
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--print-port", action="store_true", help="print PORT <n> once listening")
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN")
    parser.add_argument("--daily-limit", type=int, help="send X-RateLimit-Limit-Day: N")
    parser.add_argument("--fail-ratio", type=float, default=0.0, help="fail this share of requests")
    parser.add_argument(
        "--fail-status", type=int, default=503, help="status of --fail-ratio failures"
    )
    parser.add_argument(
        "--reject-ratio", type=float, default=0.0, help="reject this share of items"
    )
    parser.add_argument("--reject-code", default="VALIDATION_RULE", help="code of --reject-ratio")
    parser.add_argument("--max-items", type=int, help="answer 413 to requests with more items")
    parser.add_argument(
        "--rate-limit-ratio", type=float, default=0.0, help="answer 429 to this share of requests"
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="seconds a --rate-limit-ratio 429 asks for"
    )
    parser.add_argument(
        "--retry-after-form",
        choices=["seconds", "date", "both"],
        default="seconds",
        help="Retry-After as delay-seconds, an HTTP date, or each in turn",
    )
    parser.add_argument(
        "--slow-ratio", type=float, default=0.0, help="answer this share of requests late"
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=31.0,
        help="how late (the items are applied all the same)",
    )
    parser.add_argument(
        "--malformed-ratio",
        type=float,
        default=0.0,
        help="answer this share of requests 200 with a body cut short (items not applied)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the ratio faults")
    parser.add_argument("--keep-items", action="store_true", help="keep accepted envelopes")
    parser.add_argument("--quiet", action="store_true", help="no startup or summary lines")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--record-times",
        action="store_true",
        help=f"record when each item was accepted (GET {ACCEPTED_AT_PATH}?feed=F)",
    )
    return parser
