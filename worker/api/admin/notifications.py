"""`GET/PUT /sync/notifications`: the notification settings in force for every worker;
`POST /sync/notifications/test`: a test POST to the webhook."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from feeds.notify import settings, webhook
from feeds.urls import host_of
from worker.api.actions import record_setting
from worker.api.admin.endpoint import ERRORS, Admin, iso_time
from worker.api.auth import get_context
from worker.api.cdi import Message

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
    ctx = get_context(request)
    changed = settings.update_settings(ctx, frequency=body.frequency, webhook_url=body.webhook_url)
    record_setting(ctx, key, "set_notifications", describe(changed), "Notification settings saved.")
    return _notifications(changed)


@router.post(
    "/notifications/test",
    response_model=Message,
    responses={**ERRORS, 502: {"model": Message, "description": "The webhook did not answer 2xx"}},
    summary="POST a test notification to the webhook in force",
)
def test_notification(request: Request, key: Admin) -> Message:
    return Message(message=webhook.send_test(get_context(request)))


def describe(config: settings.NotificationConfig) -> str:
    """The settings as the audit list shows them (the webhook's host only: its path may hold a
    secret)."""
    where = f" to {host_of(config.webhook_url)}" if config.webhook_url else ""
    return f"{config.frequency.value}{where}"


def _notifications(config: settings.NotificationConfig) -> NotificationsOut:
    return NotificationsOut(
        frequency=config.frequency.value,
        webhook_url=config.webhook_url,
        source=config.source,
        updated_at=iso_time(config.updated_at),
        message="success",
    )
