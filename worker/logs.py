"""structlog set-up: one event per line, JSON in production, readable on a terminal; always on stderr.

Context is bound once and carried by every line written under it: `job` (run_job, the Celery
tasks), `task_id` (Celery), `feed`, `run_id` and `operation` (a sync run's events). Libraries that
log through the standard library (Celery, uvicorn, alembic) go through the same renderer, so a
production log is JSON lines from end to end.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

# Chatty at INFO (a line per HTTP request sent, per migration context): warnings only.
QUIET_LIBRARIES = ("httpx", "httpcore", "alembic")


def pick_format(log_format: str | None) -> str:
    """SPEC §8 LOG_FORMAT: as set, else console on a terminal and json otherwise."""
    if log_format is not None:
        return log_format
    return "console" if sys.stderr.isatty() else "json"


def configure(log_format: str | None, level: int = logging.INFO) -> None:
    """`log_format` None picks console on a terminal and json otherwise (SPEC §8 LOG_FORMAT)."""
    log_format = pick_format(log_format)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
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
    _route_standard_logging(shared, renderer, level, json=log_format == "json")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to the current sys.stderr (resolved per record, like the structlog side)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def _route_standard_logging(
    shared: list[structlog.typing.Processor],
    renderer: structlog.typing.Processor,
    level: int,
    *,
    json: bool,
) -> None:
    """Standard-library records (Celery, uvicorn, alembic) rendered as structlog events."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if json else []),
            renderer,
        ],
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)  # configured again (tests, Celery): one handler, not two
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def connect_celery() -> None:
    """Bind `task_id` and `task` around every Celery task (task_prerun / task_postrun)."""
    from celery.signals import task_postrun, task_prerun

    @task_prerun.connect(weak=False)
    def _bind(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is not None:
            structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", "?"))

    @task_postrun.connect(weak=False)
    def _unbind(**_: Any) -> None:
        structlog.contextvars.unbind_contextvars("task_id", "task")
