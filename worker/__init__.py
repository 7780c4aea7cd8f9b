"""Feedsync delivery: the CLI (`python -m worker …`), the cron jobs, the embedded runner, the Celery app.

`celery -A worker …` finds the Celery app as `worker.celery`, loaded on first access, so that
`import worker` (the CLI) stays light and needs no broker.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "celery":
        from worker.app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
