from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body

DeliveryState = Literal["pending", "sent", "dead", "cancelled"]


class DeviceRegistration(Body):
    push_token: Annotated[
        str, msgspec.Meta(min_length=1, max_length=4096, description="The app's FCM registration token")
    ]
    platform: Literal["android", "ios"]
    app_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32, examples=["3.2.1"])]
    locale: Literal["zh-CN", "en"] = "zh-CN"


class Device(Body):
    id: uuid.UUID
    platform: Literal["android", "ios"]
    locale: Literal["zh-CN", "en"]
    app_version: str
    registered_at: datetime


class InboxItem(Body):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    shown_at: datetime
    read_at: datetime | None


class Inbox(Body):
    items: list[InboxItem]
    unread_count: int
    next_cursor: str | None


class Delivery(Body):
    id: uuid.UUID
    notification_id: uuid.UUID
    kind: str
    channel: Literal["push", "sms"]
    device_id: uuid.UUID | None
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    national_id_masked: str


class DeliveryPage(Body):
    items: list[Delivery]
    next_cursor: str | None
