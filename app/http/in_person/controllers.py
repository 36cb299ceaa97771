"""Certification without a selfie, and appeals: the pensioner's side under /v1/certifications and
/v1/appeals, the operators' under /v1/admin."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from app.http.auth.guards import requires
from app.http.in_person import schemas as s
from app.http.openapi import NOT_LINKED, problems
from app.http.schemas import BEARER, STAFF_REASON_REFUSALS, to_schema
from app.services import Services
from certification.in_person import rules
from certification.in_person.service import InPersonCertified
from certification.ladder import RegionCounts
from core.errors import BadRequest, Conflict, NotFound
from core.principal import ADMIN, CARDHOLDER, OPERATOR, Principal

NO_REQUEST = NotFound("request_not_found")
REQUEST_CLOSED = Conflict("request_closed")
NO_APPEAL = NotFound("appeal_not_found")
DECEASED = Conflict("person_deceased")
Limit = Annotated[int, Parameter(ge=1, le=200, description="how many, the longest waiting first")]


def _request(row: asyncpg.Record) -> s.InPersonRequest:
    return to_schema(s.InPersonRequest, row)


def _appeal(row: asyncpg.Record) -> s.Appeal:
    return to_schema(s.Appeal, row)


def _certified(done: InPersonCertified) -> s.InPersonCertification:
    return s.InPersonCertification(
        id=done.id,
        masked_national_id=done.masked_national_id,
        method=done.method,  # type: ignore[arg-type]
        eligible_until=done.eligible_until,
    )


def _counts(counts: RegionCounts) -> s.RegionCounts:
    return s.RegionCounts(**dataclasses.asdict(counts), still_due=counts.still_due)


class InPersonController(Controller):
    path = "/v1/certifications/in-person-requests"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post(
        "/",
        status_code=201,
        summary="Ask for a home visit or a service-point appointment instead of a selfie (one open at a time)",
        responses=problems(NOT_LINKED, DECEASED),
    )
    async def ask(
        self, data: s.InPersonRequestBody, request: Request[Principal, Any, Any], services: Services
    ) -> s.InPersonRequest:
        return _request(await services.in_person.request(request.user, data.kind, data.note))

    @get("/", summary="My requests for a visit or an appointment, the newest first", responses=problems(NOT_LINKED))
    async def mine(self, request: Request[Principal, Any, Any], services: Services) -> s.InPersonRequestList:
        return s.InPersonRequestList(requests=[_request(r) for r in await services.in_person.requests(request.user)])

    @post(
        "/{request_id:uuid}/cancellation",
        status_code=200,
        summary="Cancel my open request",
        responses=problems(NOT_LINKED, NO_REQUEST, REQUEST_CLOSED),
    )
    async def cancel(
        self, request_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.InPersonRequest:
        return _request(await services.in_person.cancel(request.user, request_id))


class AppealController(Controller):
    path = "/v1/appeals"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post(
        "/",
        status_code=201,
        summary="Appeal a withheld payment or a failed check; the answer is due within 15 days",
        responses=problems(NOT_LINKED, BadRequest("appeal_subject_invalid")),
    )
    async def appeal(self, data: s.AppealBody, request: Request[Principal, Any, Any], services: Services) -> s.Appeal:
        return _appeal(await services.in_person.appeal(request.user, data.subject, data.subject_id, data.statement))

    @get("/", summary="My appeals, the newest first", responses=problems(NOT_LINKED))
    async def mine(self, request: Request[Principal, Any, Any], services: Services) -> s.AppealList:
        return s.AppealList(appeals=[_appeal(r) for r in await services.in_person.appeals(request.user)])


class InPersonAdminController(Controller):
    path = "/v1/admin"
    tags = ["administration"]
    guards = [requires(OPERATOR, ADMIN)]
    security = BEARER

    @get("/in-person-requests", summary="Open requests for a visit or an appointment, the oldest first")
    async def open_requests(self, services: Services, limit: Limit = 50) -> s.OpenInPersonRequestList:
        waiting = await services.in_person.open_requests(limit)
        return s.OpenInPersonRequestList(
            requests=[
                to_schema(s.OpenInPersonRequest, r, waiting_days=(waiting.now - r["requested_at"]).days)
                for r in waiting.rows
            ]
        )

    @post(
        "/in-person-requests/{request_id:uuid}/schedule",
        status_code=200,
        summary="Set (or move) the time and place of a visit or an appointment; the person is told",
        responses=problems(NO_REQUEST, REQUEST_CLOSED, BadRequest("schedule_in_past"), BadRequest("schedule_too_far")),
    )
    async def schedule(
        self, request_id: uuid.UUID, data: s.Schedule, request: Request[Principal, Any, Any], services: Services
    ) -> s.InPersonRequest:
        at = data.scheduled_for if data.scheduled_for.tzinfo else data.scheduled_for.replace(tzinfo=UTC)
        return _request(await services.in_person.schedule(request.user, request_id, at, data.place))

    @post(
        "/in-person-certifications",
        status_code=201,
        summary="Record that an operator saw the person and certifies them, with a reason (audited)",
        responses=problems(
            *STAFF_REASON_REFUSALS,
            BadRequest("national_id_invalid"),
            NotFound("person_not_found"),
            NO_REQUEST,
            REQUEST_CLOSED,
            DECEASED,
        ),
    )
    async def certify(
        self, data: s.InPersonCertificationBody, request: Request[Principal, Any, Any], services: Services
    ) -> s.InPersonCertification:
        done = await services.in_person.certify(
            request.user, data.national_id, data.method, data.reason, data.request_id
        )
        return _certified(done)

    @post(
        "/in-person-requests/{request_id:uuid}/certification",
        status_code=201,
        summary="The visit or appointment took place: certify the person the way they asked, with a reason",
        responses=problems(*STAFF_REASON_REFUSALS, NO_REQUEST, REQUEST_CLOSED, DECEASED),
    )
    async def certify_request(
        self,
        request_id: uuid.UUID,
        data: s.RequestCertificationBody,
        request: Request[Principal, Any, Any],
        services: Services,
    ) -> s.InPersonCertification:
        return _certified(await services.in_person.certify_request(request.user, request_id, data.reason))

    @get(
        "/certification-report",
        summary="How pensioners were certified in a year, per region: by data, by face, in person, still due",
    )
    async def report(
        self,
        services: Services,
        year: Annotated[int, Parameter(ge=2000, le=2100, description="the cycle: a calendar year, China time")],
        region: Annotated[str | None, Parameter(pattern=r"^[1-9][0-9]{5}$", description="one region only")] = None,
    ) -> s.LadderReport:
        found = await services.ladder.report(year, region)
        return s.LadderReport(year=found.year, regions=[_counts(r) for r in found.regions], total=_counts(found.total))

    @get("/appeals", summary="Open appeals, the answer most due first (overdue ones flagged)")
    async def open_appeals(self, services: Services, limit: Limit = 50) -> s.OpenAppealList:
        waiting = await services.in_person.open_appeals(limit)
        return s.OpenAppealList(
            appeals=[to_schema(s.OpenAppeal, r, overdue=rules.overdue(r["due_at"], waiting.now)) for r in waiting.rows]
        )

    @post(
        "/appeals/{appeal_id:uuid}/decision",
        status_code=200,
        summary="Uphold an appeal (the person is certified; withheld months are paid back) or reject it, with a reason",
        responses=problems(*STAFF_REASON_REFUSALS, NO_APPEAL, Conflict("appeal_decided"), DECEASED),
    )
    async def decide(
        self, appeal_id: uuid.UUID, data: s.AppealDecision, request: Request[Principal, Any, Any], services: Services
    ) -> s.Appeal:
        return _appeal(await services.in_person.decide_appeal(request.user, appeal_id, data.outcome, data.reason))
