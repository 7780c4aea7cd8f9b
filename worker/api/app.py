"""The FastAPI application, served by `python -m worker api` and the embedded `run`.

One Context is opened when the app is created and closed at shutdown. Every answer other than
success is JSON `{"message": "<one sentence>"}`. The API knows nothing of Celery: whoever builds it
passes the trigger of requested syncs (`worker.sync_requests.trigger_for`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.settings import Settings, load_settings
from feeds import apikeys
from feeds.context import open_context
from worker.api import admin, cdi
from worker.api.auth import ApiError
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

    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        with ctx.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    app.include_router(cdi.router)
    app.include_router(admin.router)
    from worker.api import dashboard

    app.include_router(dashboard.router)
    return app


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"message": validation_sentence(exc.errors())}, status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        {"message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("api.internal_error", path=request.url.path)
    return JSONResponse({"message": "Internal error; the server log has the details."}, 500)


def validation_sentence(errors: object) -> str:
    """One sentence for the first invalid parameter: where it is, what was sent, what is accepted."""
    first: dict[str, Any] = next(iter(errors), {}) if isinstance(errors, list | tuple) else {}
    if first.get("type") == "json_invalid":
        reason = str(first.get("ctx", {}).get("error", "it does not parse"))
        return f"The request body is not valid JSON: {reason[0].lower()}{reason[1:]}."
    if first.get("type") == "missing" and tuple(first.get("loc", ())) == ("body",):
        return "The request body is missing; accepted: a JSON object."
    loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    where = {"query": "query parameter", "path": "path parameter", "body": "request body"}.get(
        str(first.get("loc", ("body",))[0]), "parameter"
    )
    name = ".".join(loc)
    message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    label = f"{where} {name!r}" if name else where
    if "input" in first and first.get("type") != "missing":
        sent = repr(first["input"])
        sent = sent if len(sent) <= 80 else sent[:77] + "..."
        return f"The {label} = {sent} is not accepted: {message}."
    return f"The {label} is not accepted: {message}."
