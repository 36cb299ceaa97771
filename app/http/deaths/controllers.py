from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post

from app.http.auth.guards import requires
from app.http.deaths.schemas import DeathReversalRequest, PersonRestored
from app.http.openapi import problems
from app.http.schemas import BEARER
from app.services import Services
from core.errors import BadRequest, Conflict, NotFound
from core.principal import ADMIN, OPERATOR, Principal


class DeathReversalController(Controller):
    path = "/v1/admin/death-reversals"
    tags = ["deaths"]
    guards = [requires(OPERATOR, ADMIN)]
    security = BEARER

    @post(
        "/",
        status_code=200,
        summary="Reverse a wrong death report: card, pension and skipped months restored",
        responses=problems(BadRequest("national_id_invalid"), NotFound("person_not_found"), Conflict("not_deceased")),
    )
    async def reverse(
        self, data: DeathReversalRequest, request: Request[Principal, Any, Any], services: Services
    ) -> PersonRestored:
        reversal = await services.deaths.reverse(request.user, data.national_id, data.reason.strip())
        return msgspec.convert(reversal, PersonRestored, from_attributes=True)
