"""Destination faults during a full sync of 50k products and during partial syncs: 5xx, 429 (Retry-After
in seconds, as an HTTP date, and longer than a run waits), answers slower than the timeout, garbled
200 answers and results missing items, connection resets, rejections. The destination heals, the
minute jobs converge, and the destination holds what a fresh build of the source gives.

Only a request the destination applied while its answer was lost (a late answer, a reset or a garbled
answer after applying) may deliver a version twice: every other fault must deliver nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from feeds.commerce import demo
from feeds.context import Context
from feeds.definitions import ItemStatus
from feeds.export.protocol import category_of
from feeds.pipeline.resync_errors import MAX_RESYNC_ERRORS, resync_errors
from feeds.state.tables import items, sync_errors
from tests.resilience.conftest import Deploy
from tests.resilience.ending import Convergence, RecordProperty, end
from worker.testing.converge import settle
from worker.testing.destination_server import DestinationServer

pytestmark = [pytest.mark.resilience]

FULL_LOAD = 50_000
PARTIAL_LOAD = 3_000
BATCH = 500  # EXPORT_BATCH_SIZE's default: the items one request carries
REJECTION_CODES = ("MISSING_ASSOCIATION", "INVALID_VALUE", "DUPLICATE_VALUE", "SOMETHING_NEW")


@dataclass(frozen=True)
class Fault:
    """How the destination misbehaves until it heals (`clear_faults`)."""

    name: str
    inject: Callable[[DestinationServer], None]
    # Requests the destination applies while the answer is lost: each may deliver its batch twice.
    applied_unheard: int = 0
    env: dict[str, str] = field(default_factory=dict)
    rejects: bool = False

    def __str__(self) -> str:
        return self.name


def together(name: str, faults: Sequence[Fault]) -> Fault:
    def inject(destination: DestinationServer) -> None:
        for fault in faults:
            fault.inject(destination)

    env = {k: v for fault in faults for k, v in fault.env.items()}
    return Fault(
        name,
        inject,
        sum(f.applied_unheard for f in faults),
        env,
        any(f.rejects for f in faults),
    )


def rejections(every: int) -> Fault:
    """4 items in `every` rejected, each with its own code (`other` for the unknown one)."""

    def inject(destination: DestinationServer) -> None:
        for n, code in enumerate(REJECTION_CODES):
            destination.reject(lambda item, n=n: int(item["id"]) % every == 7 + n, code=code)

    return Fault(f"rejections of 4 items in {every}, 4 codes", inject, rejects=True)


def missing(every: int) -> Fault:
    """Results that leave out 1 item in `every` (those items are not applied either)."""
    return Fault(
        f"results missing 1 item in {every}",
        lambda d: d.omit(str(n) for n in range(0, 2 * FULL_LOAD, every)),
    )


def _garble(destination: DestinationServer) -> None:
    destination.garble_next(1, apply=True)  # truncated JSON, after applying the items
    destination.garble_next(1, b'{"results": "all good"}')
    destination.garble_next(1, b"\x1f\x8b not gzip", headers={"Content-Encoding": "gzip"})


def _reset(destination: DestinationServer) -> None:
    destination.reset_next(1, apply=True)
    destination.reset_next(1)


SERVER_ERRORS = Fault("503 on 30% of requests", lambda d: d.fail_ratio(0.3, 503, seed=1))
SOME_SERVER_ERRORS = Fault("503 on 10% of requests", lambda d: d.fail_ratio(0.1, 503, seed=1))
RETRY_AFTER_SECONDS = Fault("429, Retry-After 1 s", lambda d: d.rate_limit_next(3, 1))
RETRY_AFTER_DATE = Fault(
    "429, Retry-After as an HTTP date", lambda d: d.rate_limit_next(3, 1, http_date=True)
)
RETRY_AFTER_LONG = Fault(
    "429, Retry-After 120 s (past the 60 s a run waits)", lambda d: d.rate_limit_next(1, 120)
)
# The one non-default setting of the suite: waiting out the default 30 s timeout takes minutes.
# 2 s still leaves a busy CI machine's ordinary answers (milliseconds) far from timing out.
LATE = Fault(
    "answers 3 s late, timeout 2 s",
    lambda d: d.slow_next(1, 3.0),
    applied_unheard=1,
    env={"EXPORT_TIMEOUT_S": "2"},
)
GARBLED = Fault("garbled 200 answers", _garble, applied_unheard=1)
RESETS = Fault("connection resets", _reset, applied_unheard=1)

FULL_SYNC_FAULTS = [
    together(
        "503s, 429s, resets, garbled answers, missing results, rejections",
        [SOME_SERVER_ERRORS, RETRY_AFTER_SECONDS, RESETS, GARBLED, missing(50), rejections(1000)],
    ),
    together("429s as HTTP dates, late answers", [RETRY_AFTER_DATE, LATE]),
]
PARTIAL_SYNC_FAULTS = [
    SERVER_ERRORS,
    RETRY_AFTER_SECONDS,
    RETRY_AFTER_DATE,
    RETRY_AFTER_LONG,
    LATE,
    GARBLED,
    missing(7),
    RESETS,
    rejections(50),
]


def converge_as_it_heals(
    ctx: Context, destination: DestinationServer, convergence: Convergence
) -> None:
    """Two rounds of the minute jobs under the faults; the destination heals; the jobs converge."""
    convergence.settle(ctx, max_rounds=2)
    destination.clear_faults()
    if not convergence.converged:
        convergence.settle(ctx)


def resync_rejections(ctx: Context, fault: Fault) -> int:
    """Every rejection waits as an open error of its code's category; with the destination fixed,
    an admin resyncs them (as POST /sync/errors/resync does). Returns how many there were."""
    with ctx.db.connect() as conn:
        rejected = dict(
            conn.execute(
                select(items.c.id, items.c.error_code).where(
                    items.c.status == int(ItemStatus.REJECTED)
                )
            ).all()
        )
        errors = {
            row.item_id: (row.id, row.category)
            for row in conn.execute(
                select(sync_errors.c.id, sync_errors.c.item_id, sync_errors.c.category).where(
                    sync_errors.c.resolved.is_(False)
                )
            )
        }
    assert bool(rejected) is fault.rejects
    assert {i: errors[i][1] for i in rejected} == {
        i: category_of(code).value for i, code in rejected.items()
    }
    ids = [errors[i][0] for i in sorted(rejected)]
    for start in range(0, len(ids), MAX_RESYNC_ERRORS):
        assert resync_errors(ctx, ids[start : start + MAX_RESYNC_ERRORS]).still_failing == []
    return len(rejected)


@pytest.mark.postgres
@pytest.mark.parametrize("fault", FULL_SYNC_FAULTS, ids=str)
def test_a_full_sync_of_50k_products_converges_through_destination_faults(
    open_catalog: Deploy,
    postgres_url: str,
    destination: DestinationServer,
    record_property: RecordProperty,
    fault: Fault,
) -> None:
    ctx = open_catalog(postgres_url, FULL_LOAD, fault.env)
    fault.inject(destination)
    convergence = Convergence()

    converge_as_it_heals(ctx, destination, convergence)
    rejected = resync_rejections(ctx, fault)

    result = end(
        ctx,
        destination,
        record_property,
        scenario=f"full sync: {fault}",
        load=f"{FULL_LOAD} products",
        faults=f"{fault}" + (f" ({rejected} rejected, then resynced)" if rejected else ""),
        convergence=convergence,
    )
    assert result.feeds["products"].matched == result.feeds["products"].live == FULL_LOAD
    assert result.duplicates <= fault.applied_unheard * BATCH


@pytest.mark.parametrize("fault", PARTIAL_SYNC_FAULTS, ids=str)
def test_partial_syncs_converge_through_destination_faults(
    open_catalog: Deploy,
    db_url: str,
    destination: DestinationServer,
    record_property: RecordProperty,
    fault: Fault,
) -> None:
    ctx = open_catalog(db_url, PARTIAL_LOAD, fault.env)
    assert settle(ctx).converged  # onboarding: the first full sync, before any fault
    convergence = Convergence()
    for minute in range(3):  # three minutes of the application's changes, each synced under faults
        demo.change(ctx.source, update=150, delete=20, seed=minute)
        fault.inject(destination)
        converge_as_it_heals(ctx, destination, convergence)
    rejected = resync_rejections(ctx, fault)

    result = end(
        ctx,
        destination,
        record_property,
        scenario=f"partial syncs ({ctx.db.dialect.name}): {fault}",
        load=f"{PARTIAL_LOAD} products, 3 x (150 updated, 20 deleted)",
        faults=f"{fault}" + (f" ({rejected} rejected, then resynced)" if rejected else ""),
        convergence=convergence,
    )
    assert result.feeds["products"].deleted == 60
    assert result.duplicates <= 3 * fault.applied_unheard * BATCH
