"""Fund-supervision alerts for operators: list them with their evidence, close each with a reason."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from app.http.auth.guards import requires
from app.http.openapi import problems
from app.http.paging import Cursor, Limit
from app.http.schemas import BEARER, STAFF_REASON_REFUSALS, to_schema
from app.http.supervision import schemas as s
from app.services import Services
from core.errors import Conflict, NotFound
from core.paging import after, page
from core.principal import ADMIN, OPERATOR, Principal

NO_ALERT = NotFound("alert_not_found")


def to_alert(row: asyncpg.Record) -> s.Alert:
    return to_schema(s.Alert, row)


class AlertController(Controller):
    path = "/v1/admin/alerts"
    tags = ["supervision"]
    guards = [requires(OPERATOR, ADMIN)]
    security = BEARER

    @get("/", summary="Supervision alerts, newest first, by kind and state")
    async def list_alerts(
        self,
        services: Services,
        kind: s.AlertKind | None = None,
        in_state: Annotated[s.AlertState | None, Parameter(query="state")] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> s.AlertList:
        start = after(cursor, uuid.UUID)
        rows = await services.supervision.alerts(kind, in_state, start[0] if start else None, limit + 1)
        shown, next_cursor = page(rows, limit, lambda row: (row["id"],))
        return s.AlertList(items=[to_alert(row) for row in shown], next_cursor=next_cursor)

    @get("/{alert_id:uuid}", summary="An alert and its evidence", responses=problems(NO_ALERT))
    async def get_alert(self, alert_id: uuid.UUID, services: Services) -> s.Alert:
        return to_alert(await services.supervision.alert(alert_id))

    @post(
        "/{alert_id:uuid}/closing",
        status_code=200,
        summary="Close an alert with the reason (audited)",
        responses=problems(NO_ALERT, Conflict("alert_closed"), *STAFF_REASON_REFUSALS),
    )
    async def close(
        self, alert_id: uuid.UUID, data: s.AlertClosing, request: Request[Principal, Any, Any], services: Services
    ) -> s.Alert:
        return to_alert(await services.supervision.close(request.user, alert_id, data.reason))
