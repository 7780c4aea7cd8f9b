"""`GET/PUT /sync/notifications`: the notification settings in force for every worker."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from feeds.notify import settings
from worker.api.admin.endpoint import ERRORS, Admin, iso_time
from worker.api.auth import get_context

router = APIRouter()


class NotificationsIn(BaseModel):
    frequency: str = Field(description="off, immediately, daily or weekly")
    webhook_url: str | None = Field(
        default=None, description="http(s) URL receiving the JSON POSTs; needed unless off"
    )


class NotificationsOut(BaseModel):
    frequency: str
    webhook_url: str | None
    source: str
    updated_at: str | None
    message: str


@router.get(
    "/notifications",
    response_model=NotificationsOut,
    responses=ERRORS,
    summary="Notification settings in force, and where they come from",
)
def get_notifications(request: Request, key: Admin) -> NotificationsOut:
    return _notifications(settings.current_settings(get_context(request)))


@router.put(
    "/notifications",
    response_model=NotificationsOut,
    responses=ERRORS,
    summary="Change the notification settings for every worker",
)
def put_notifications(request: Request, body: NotificationsIn, key: Admin) -> NotificationsOut:
    changed = settings.update_settings(
        get_context(request), frequency=body.frequency, webhook_url=body.webhook_url
    )
    return _notifications(changed)


def _notifications(config: settings.NotificationConfig) -> NotificationsOut:
    return NotificationsOut(
        frequency=config.frequency.value,
        webhook_url=config.webhook_url,
        source=config.source,
        updated_at=iso_time(config.updated_at),
        message="success",
    )
