"""Authentication of API requests (SPEC §7): `Authorization: Bearer <API key>`, a permission per
endpoint, and the per-key rate limits. Missing or unknown key → 401, no permission → 403, past the
rate limit → 429 with `Retry-After`; every refusal is JSON `{"message": ...}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from feeds.context import Context
from worker.api import apikeys
from worker.api.apikeys import ApiKey, Permission
from worker.api.errors import ApiError
from worker.api.ratelimit import Limit, RateLimiter

log = structlog.get_logger("worker.api.auth")

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made with `python -m worker apikey:create`.",
)


def authenticate(ctx: Context, raw_key: str) -> ApiKey | None:
    """The active API key with this secret, or None when it is unknown or revoked."""
    return apikeys.find_key(ctx.db, raw_key.strip())


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def require(permission: Permission, limit: Limit | None = None) -> Callable[..., ApiKey]:
    """A FastAPI dependency: the request's API key, which holds `permission` and is within `limit`."""

    def dependency(
        request: Request,
        response: Response,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> ApiKey:
        ctx = get_context(request)
        key: ApiKey | None
        if credentials is None or not credentials.credentials:
            raise ApiError(
                401,
                "Missing API key: send it as 'Authorization: Bearer <key>' "
                "(create one with python -m worker apikey:create).",
                {"WWW-Authenticate": "Bearer"},
            )
        key = authenticate(ctx, credentials.credentials)
        if key is None:
            log.info("api.unauthorized", path=request.url.path)
            raise ApiError(401, "Invalid API key.", {"WWW-Authenticate": "Bearer"})
        if not key.allows(permission):
            log.info("api.forbidden", path=request.url.path, key_id=key.id, needs=permission.value)
            raise ApiError(403, f"This API key lacks the permission {permission.value}.")
        if limit is not None:
            limiter: RateLimiter = request.app.state.limiter
            verdict = limiter.hit(key.id, limit)
            headers = {
                "X-RateLimit-Limit": str(verdict.limit),
                "X-RateLimit-Remaining": str(verdict.remaining),
            }
            if not verdict.allowed:
                log.info("api.rate_limited", path=request.url.path, key_id=key.id)
                raise ApiError(
                    429,
                    f"Rate limit of {limit.per_minute} requests per minute exceeded for this API key; "
                    f"retry in {verdict.retry_after_s} s.",
                    {**headers, "Retry-After": str(verdict.retry_after_s)},
                )
            response.headers.update(headers)
        return key

    return dependency


def known_query_only(request: Request) -> None:
    """Refuse a query parameter the endpoint does not take (400), rather than ignore it: a
    misspelt filter must not answer as if it were applied."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    accepted = sorted(_query_names(dependant))
    unknown = sorted(set(request.query_params) - set(accepted))
    if unknown:
        raise ApiError(
            400,
            f"Unknown query parameter {', '.join(repr(u) for u in unknown)}; accepted: "
            f"{', '.join(accepted) or 'none'}.",
        )


def _query_names(dependant: Any) -> set[str]:
    """The query parameters an endpoint takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
