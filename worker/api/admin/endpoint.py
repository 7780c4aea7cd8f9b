"""What every admin endpoint shares: the key it needs (`sync.admin`), the refusals it documents,
the feed filter, and the offset links of its list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from feeds.context import Context
from feeds.pipeline.diff import iso
from worker.api.apikeys import ApiKey, Permission
from worker.api.auth import require
from worker.api.cdi import Message
from worker.api.errors import ApiError
from worker.api.filters import NotAccepted, choice

Admin = Annotated[ApiKey, Depends(require(Permission.SYNC_ADMIN))]

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Message, "description": "A parameter is not accepted"},
    401: {"model": Message, "description": "Missing or unknown API key"},
    403: {"model": Message, "description": "The API key lacks sync.admin"},
}


def feed_name(ctx: Context, feed: str | None) -> str | None:
    """The `feed` filter: a feed of the registry, or None when not given."""
    try:
        return choice("feed", feed, ctx.registry.names())
    except NotAccepted as exc:
        raise ApiError(
            400, f"feed {exc.value!r} is not a feed; accepted feeds: {', '.join(exc.accepted)}."
        ) from None


def offset_links(request: Request, response: Response, limit: int, offset: int, total: int) -> None:
    """`Link` to the previous and next pages of an offset-paged list, those that exist."""
    links = []
    if offset > 0:
        prev = request.url.include_query_params(offset=max(0, offset - limit), limit=limit)
        links.append(f'<{prev}>; rel="prev"')
    if offset + limit < total:
        nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
        links.append(f'<{nxt}>; rel="next"')
    if links:
        response.headers["Link"] = ", ".join(links)


def iso_time(value: object) -> str | None:
    return iso(value) if isinstance(value, datetime) else None
