"""The daily API-call allocation in force (SPEC §6): changed at runtime for the whole fleet (the
dashboard, `PUT /sync/usage`) and stored in the worker database, `EXPORT_DAILY_CALL_ALLOCATION`
being only its default. Every budget check reads it through the runtime-settings cache
(`feeds.state.runtime_settings.CACHE_S`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from feeds.context import Context
from feeds.errors import ConfigError
from feeds.state import runtime_settings

log = structlog.get_logger("feeds.export.allocation")

NAME = "export_daily_call_allocation"
MAX_ALLOCATION = 1_000_000_000
DEFAULT = "default"  # the value that goes back to EXPORT_DAILY_CALL_ALLOCATION


@dataclass(frozen=True)
class Allocation:
    """The allocation in force and where it comes from."""

    calls: int | None  # None: unlimited
    source: str  # "database" (changed at runtime) or "environment" (EXPORT_DAILY_CALL_ALLOCATION)
    default: int | None  # EXPORT_DAILY_CALL_ALLOCATION; None: unlimited
    updated_at: datetime | None = None
    updated_by: str | None = None


def current(ctx: Context) -> Allocation:
    stored = runtime_settings.read(ctx.db, NAME)
    default = ctx.plan.call_allocation
    if stored is None:
        return Allocation(default, "environment", default)
    return Allocation(stored.value, "database", default, stored.updated_at, stored.updated_by)


def calls(ctx: Context) -> int | None:
    """The calls per 24 h in force: what a budget check compares the window with."""
    return current(ctx).calls


def parse(value: Any) -> int | None | str:
    """A requested allocation: a whole number of calls, None or "" for unlimited, or "default".
    ConfigError says what is wrong and what is accepted."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        if text.lower() == DEFAULT:
            return DEFAULT
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ALLOCATION:
        return value
    shown = str(value)[:40]
    raise ConfigError(
        f"The daily API-call allocation {shown!r} is not accepted; accepted: a whole number of "
        f"calls from 1 to {MAX_ALLOCATION:,}, empty (or null) for unlimited, or 'default' for "
        "the environment's EXPORT_DAILY_CALL_ALLOCATION."
    )


def change(ctx: Context, value: Any, *, by: str | None) -> Allocation:
    """Set the allocation for every worker (or back to the environment's with "default")."""
    chosen = parse(value)
    if chosen == DEFAULT:
        runtime_settings.clear(ctx.db, NAME)
    else:
        runtime_settings.write(ctx.db, NAME, chosen, by=by)
    now = current(ctx)
    log.info("budget.allocation_changed", allocation=now.calls, source=now.source, by=by)
    return now


def describe(allocation: Allocation) -> str:
    """One sentence for the audit list and the dashboard's notice."""
    shown = "unlimited" if allocation.calls is None else f"{allocation.calls:,} calls a day"
    if allocation.source == "environment":
        return f"The daily API-call allocation is back to EXPORT_DAILY_CALL_ALLOCATION: {shown}."
    return f"The daily API-call allocation is now {shown}, for every worker."
