"""The worker database's clock."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now: what every timestamp column of the worker database holds."""
    return datetime.now(UTC).replace(tzinfo=None)
