"""Warm shutdown of long work: loops ask between batches whether their process should stop.

A job that stops here has committed every batch it finished (feed rows, changelog pointer), so
running it again later continues where it stopped. The delivery layer decides what "asked to
stop" means (a Celery worker's warm shutdown, a lost fleet lock) by installing a probe.
"""

from __future__ import annotations

from collections.abc import Callable

from feeds.errors import StopRequested

Probe = Callable[[], bool]

_probes: list[Probe] = []


def install(probe: Probe) -> None:
    _probes.append(probe)


def remove(probe: Probe) -> None:
    if probe in _probes:
        _probes.remove(probe)


def requested() -> bool:
    return any(probe() for probe in _probes)


def check() -> None:
    """Raise StopRequested when a stop was asked for (call it between batches)."""
    if requested():
        raise StopRequested("Stopped between two batches: the process was asked to stop.")
