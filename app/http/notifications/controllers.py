"""Notifications over HTTP: a cardholder's devices and inbox; dead letters for administrators."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from app.http.auth.guards import requires
from app.http.locale import request_locale
from app.http.notifications import schemas as s
from app.http.openapi import NOT_LINKED, problems
from app.http.paging import Cursor, Limit
from app.http.schemas import BEARER, to_schema
from app.services import Services
from core.errors import Conflict, NotFound
from core.paging import after, page
from core.principal import ADMIN, CARDHOLDER, Principal
from notifications.templates import render


class DeviceController(Controller):
    path = "/v1/devices"
    tags = ["notifications"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post(
        "/",
        status_code=201,
        summary="Register this phone for push notifications (again, if the token moved)",
        responses=problems(NOT_LINKED),
    )
    async def register(
        self, data: s.DeviceRegistration, request: Request[Principal, Any, Any], services: Services
    ) -> s.Device:
        row = await services.notifications.register_device(
            request.user.linked_person,
            request.user.session_id,
            data.push_token,
            data.platform,
            data.locale,
            data.app_version,
        )
        return to_schema(s.Device, row)

    @delete(
        "/{device_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Stop push notifications to a phone",
        responses=problems(NOT_LINKED, NotFound("device_not_found")),
    )
    async def remove(self, device_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> None:
        await services.notifications.remove_device(request.user.linked_person, device_id)


def _item(row: asyncpg.Record, locale: str) -> s.InboxItem:
    text = render(row["kind"], locale, row["params"])
    return to_schema(s.InboxItem, row, title=text.title, body=text.body, shown_at=row["shown_from"])


class InboxController(Controller):
    path = "/v1/inbox"
    tags = ["notifications"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @get(
        "/",
        summary="My notifications, newest first, in the app's language; and how many are unread",
        responses=problems(NOT_LINKED),
    )
    async def list_inbox(
        self, request: Request[Principal, Any, Any], services: Services, cursor: Cursor = None, limit: Limit = 20
    ) -> s.Inbox:
        start = after(cursor, datetime, uuid.UUID)
        rows, unread = await services.notifications.inbox(
            request.user.linked_person, (start[0], start[1]) if start else None, limit + 1
        )
        shown, next_cursor = page(rows, limit, lambda row: (row["shown_from"], row["id"]))
        locale = request_locale(request)
        return s.Inbox(items=[_item(row, locale) for row in shown], unread_count=unread, next_cursor=next_cursor)

    @post(
        "/{notification_id:uuid}/read",
        status_code=200,
        summary="Mark a notification read",
        responses=problems(NOT_LINKED, NotFound("notification_not_found")),
    )
    async def read(
        self, notification_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.InboxItem:
        row = await services.notifications.mark_read(request.user.linked_person, notification_id)
        return _item(row, request_locale(request))


def _delivery(row: asyncpg.Record) -> s.Delivery:
    return to_schema(s.Delivery, row)


class NotificationAdminController(Controller):
    path = "/v1/admin/notifications"
    tags = ["administration"]
    guards = [requires(ADMIN)]
    security = BEARER

    @get("/", summary="Deliveries in a state, oldest first: `dead` lists the dead letters")
    async def list_deliveries(
        self,
        services: Services,
        in_state: Annotated[s.DeliveryState, Parameter(query="state")] = "dead",
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> s.DeliveryPage:
        start = after(cursor, uuid.UUID)
        rows = await services.notifications.deliveries(in_state, start[0] if start else None, limit + 1)
        shown, next_cursor = page(rows, limit, lambda row: (row["id"],))
        return s.DeliveryPage(items=[_delivery(row) for row in shown], next_cursor=next_cursor)

    @post(
        "/{delivery_id:uuid}/retry",
        status_code=200,
        summary="Send a dead delivery again (audited)",
        responses=problems(NotFound("delivery_not_found"), Conflict("delivery_not_dead", state="pending")),
    )
    async def retry(
        self, delivery_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.Delivery:
        return _delivery(await services.notifications.retry(request.user.actor, delivery_id))
