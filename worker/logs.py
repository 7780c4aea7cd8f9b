"""structlog set-up: one event per line, JSON in production, readable on a terminal; always on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(log_format: str | None, level: int = logging.INFO) -> None:
    """`log_format` None picks console on a terminal and json otherwise (SPEC §8 LOG_FORMAT)."""
    if log_format is None:
        log_format = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info
            if log_format == "json"
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolved at each call, not at set-up: stderr may be replaced (tests, daemonisation).
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
