"""The FastAPI application, served by `python -m worker api` and the embedded `run`.

One Context is opened when the app is created and closed at shutdown. Every answer other than
success is JSON `{"message": "<one sentence>"}`. The API knows nothing of Celery: whoever builds it
passes the trigger of requested syncs (`worker.sync_requests.trigger_for`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import structlog
from fastapi import FastAPI
from sqlalchemy import text

from config.context import open_context
from config.settings import Settings, load_settings
from feeds.history.feed_health import StatusCounts
from worker.api import admin, apikeys, cdi, errors
from worker.api.ratelimit import RateLimiter
from worker.sync_requests import BackgroundSync, SyncTrigger

log = structlog.get_logger("worker.api")

CURSOR_SECRET = "cursor_signing_key"
SHUTDOWN_WAIT_S = 30.0


def create_app(
    settings: Settings | None = None,
    *,
    trigger: SyncTrigger | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The API with its routers; `trigger` runs the syncs it is asked for (default: a thread of
    this process), `clock` drives the rate-limit windows (tests)."""
    ctx = open_context(settings or load_settings())
    trigger = trigger or BackgroundSync()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("api.started", database=ctx.db.url.render_as_string(hide_password=True))
        yield
        if isinstance(trigger, BackgroundSync):
            still_running = trigger.join(SHUTDOWN_WAIT_S)
            if still_running:
                log.warning("api.syncs_abandoned", threads=still_running)
        ctx.close()
        log.info("api.stopped")

    app = FastAPI(
        title="Feedsync API",
        version="1",
        description="Sync status of the Feedsync integrations (SPEC §7). "
        "Authenticate with `Authorization: Bearer <API key>`.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.trigger = trigger
    app.state.limiter = RateLimiter(ctx.db, clock) if clock else RateLimiter(ctx.db)
    app.state.cursor_secret = apikeys.shared_secret(ctx.db, CURSOR_SECRET)
    app.state.status_counts = StatusCounts()  # the feed-health item counts, kept between pages

    errors.install(app)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        with ctx.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    app.include_router(cdi.router)
    app.include_router(admin.router)
    from worker.api import dashboard

    app.include_router(dashboard.router)
    app.include_router(dashboard.drilldown_router)
    app.include_router(dashboard.trends_router)
    app.include_router(dashboard.actions_router)
    app.include_router(dashboard.settings_router)
    return app
