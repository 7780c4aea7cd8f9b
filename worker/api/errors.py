"""Every answer other than success, in one place: JSON `{"message": "<one sentence>"}` with the
status code that says whose move it is.

The domain's errors (`feeds.errors`) reach the routes as exceptions and are given their status here,
by `status_for`; the dashboard, which answers with pages, asks the same function.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from feeds.errors import FeedsyncError, LockedError, WebhookError

log = structlog.get_logger("worker.api")

# The status of each domain error, the first match wins: a feed another process holds is a
# conflict to retry later; any other refusal is one sentence about the request itself.
STATUS_OF_ERROR: tuple[tuple[type[FeedsyncError], int], ...] = (
    (LockedError, 409),
    (WebhookError, 502),  # the webhook, not the request, failed
    (FeedsyncError, 400),
)
INTERNAL_ERROR = "Internal error; the server log has the details."
# The type of a validation error whose message is already the sentence to answer (see `sentence`).
SENTENCE = "feedsync_sentence"


class ApiError(Exception):
    """An answer other than success: its status code, one sentence, and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def status_for(exc: FeedsyncError) -> int:
    return next(status for kind, status in STATUS_OF_ERROR if isinstance(exc, kind))


def sentence(text: str) -> PydanticCustomError:
    """A validation error answered as `<parameter name> <text>` (raised by a parameter's validator)."""
    return PydanticCustomError(SENTENCE, "{text}", {"text": text})


def install(app: FastAPI) -> None:
    """Answer every error of `app` with one sentence."""
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(FeedsyncError, _feedsync_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)


async def _feedsync_error(request: Request, exc: FeedsyncError) -> JSONResponse:
    return JSONResponse({"message": str(exc)}, status_code=status_for(exc))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"message": validation_sentence(exc.errors())}, status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        {"message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("api.internal_error", path=request.url.path)
    return JSONResponse({"message": INTERNAL_ERROR}, 500)


def validation_sentence(errors: object) -> str:
    """One sentence for the first invalid parameter: where it is, what was sent, what is accepted.

    A parameter whose own validator wrote the sentence (`sentence`) is reported only when no other
    parameter is invalid: such values are read after the plainly typed ones.
    """
    listed = list(errors) if isinstance(errors, list | tuple) else []
    ours = [e for e in listed if isinstance(e, dict) and e.get("type") == SENTENCE]
    others = [e for e in listed if not (isinstance(e, dict) and e.get("type") == SENTENCE)]
    if not others and ours:
        return f"{ours[0]['loc'][-1]} {ours[0]['msg']}"
    first: dict[str, Any] = next(iter(others), {})
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
