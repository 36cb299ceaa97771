"""Assisted certification: a relative links an elder and certifies them from their phone
(/v1/family/elders), the elder approves or ends it (/v1/family/helpers), operators record consent or
an end in person (/v1/admin/relative-links)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.status_codes import HTTP_202_ACCEPTED

from app.http.auth.guards import requires
from app.http.certification import schemas as cs
from app.http.certification.controllers import (
    CHALLENGE_REFUSALS,
    SUBMISSION_MAX_BODY,
    SUBMISSION_REFUSALS,
    SubmissionOperation,
    read_submission,
)
from app.http.family import schemas as s
from app.http.openapi import NOT_LINKED, problems
from app.http.schemas import BEARER, STAFF_REASON_REFUSALS
from app.services import Services
from certification.assisted.service import LINK_CLOSED, LINK_NOT_FOUND
from certification.service import UploadMedia
from core.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from core.principal import ADMIN, CARDHOLDER, OPERATOR, Principal

DECEASED = Conflict("person_deceased")
HELPERS_LIMIT = Conflict("relative_helpers_limit", most=3)
CODE_REFUSALS = (
    BadRequest("otp_expired"),
    BadRequest("otp_invalid", left=4),
    BadRequest("otp_locked"),
)
PERSON_REFUSALS = (BadRequest("national_id_invalid"), NotFound("person_not_found"))
ASSISTING = (LINK_NOT_FOUND, LINK_CLOSED, Forbidden("device_required"))


class FamilyController(Controller):
    path = "/v1/family"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    # -- the relative ----------------------------------------------------------------------------
    @post(
        "/elders",
        status_code=201,
        summary="Ask to help an elder certify; a code for their consent goes to the elder's phone",
        responses=problems(
            NOT_LINKED,
            *PERSON_REFUSALS,
            BadRequest("relative_self"),
            DECEASED,
            Conflict("relative_elders_limit", most=2),
            HELPERS_LIMIT,
            TooManyRequests("otp_rate_limited", minutes=10),
        ),
    )
    async def ask(
        self, data: s.RelativeLinkBody, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLinkRequested:
        asked = await services.assisted.ask(request.user, data.national_id, data.relationship)
        return s.RelativeLinkRequested(link=s.link_of(asked.link), code_expires_in=asked.code_expires_in)

    @get("/elders", summary="The elders I help or asked to help", responses=problems(NOT_LINKED))
    async def elders(self, request: Request[Principal, Any, Any], services: Services) -> s.RelativeLinkList:
        return s.RelativeLinkList(links=[s.link_of(r) for r in await services.assisted.elders(request.user)])

    @post(
        "/elders/{link_id:uuid}/consent",
        status_code=200,
        summary="Type in the code the elder gave you: their consent to your help and to face processing",
        responses=problems(NOT_LINKED, *CODE_REFUSALS, LINK_NOT_FOUND, LINK_CLOSED, DECEASED, HELPERS_LIMIT),
    )
    async def consent(
        self, link_id: uuid.UUID, data: s.ConsentCode, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLink:
        return s.link_of(await services.assisted.consent_by_code(request.user, link_id, data.code))

    @post(
        "/elders/{link_id:uuid}/end",
        status_code=200,
        summary="Stop helping this elder (or withdraw the request)",
        responses=problems(NOT_LINKED, LINK_NOT_FOUND),
    )
    async def end(
        self, link_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLink:
        return s.link_of(await services.assisted.end_as_relative(request.user, link_id))

    @post(
        "/elders/{link_id:uuid}/challenges",
        status_code=201,
        summary="Start the elder's certification on this phone: random actions for the elder to do",
        responses=problems(*CHALLENGE_REFUSALS, *ASSISTING),
    )
    async def new_challenge(
        self, link_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> cs.Challenge:
        challenges_url = str(request.url.with_replacements(path=f"{self.path}/elders/{link_id}/challenges/", query=""))
        return cs.challenge_of(await services.assisted.new_challenge(request.user, link_id), challenges_url)

    @post(
        "/elders/{link_id:uuid}/challenges/{challenge_id:uuid}/submission",
        status_code=HTTP_202_ACCEPTED,
        request_max_body_size=SUBMISSION_MAX_BODY,
        summary="Submit the video of the elder: multipart (`video`, or 5-30 `frames`) or JSON {s3_key}",
        operation_class=SubmissionOperation,
        responses=problems(*SUBMISSION_REFUSALS, *ASSISTING, DECEASED),
    )
    async def submit(
        self, link_id: uuid.UUID, challenge_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> cs.CheckAccepted:
        media = await read_submission(request)
        if isinstance(media, UploadMedia):
            check_id = await services.assisted.submit_upload(request.user, link_id, challenge_id, media)
        else:
            check_id = await services.assisted.submit_stored(request.user, link_id, challenge_id, media.s3_key)
        return cs.CheckAccepted(check_id=check_id, status="queued")

    @get(
        "/checks/{check_id:uuid}",
        summary="A check I submitted for an elder: its status, reasons and advice",
        responses=problems(NOT_LINKED, NotFound("check_not_found")),
    )
    async def check(self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> cs.Check:
        return cs.check_of(await services.assisted.check(request.user, check_id))

    # -- the elder -------------------------------------------------------------------------------
    @get("/helpers", summary="The relatives who help me certify, or asked to", responses=problems(NOT_LINKED))
    async def helpers(self, request: Request[Principal, Any, Any], services: Services) -> s.RelativeLinkList:
        return s.RelativeLinkList(links=[s.link_of(r) for r in await services.assisted.helpers(request.user)])

    @post(
        "/helpers/{link_id:uuid}/approval",
        status_code=200,
        summary="Agree that this relative helps me certify (and to face processing for it)",
        responses=problems(NOT_LINKED, LINK_NOT_FOUND, LINK_CLOSED, DECEASED, HELPERS_LIMIT),
    )
    async def approve(
        self, link_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLink:
        return s.link_of(await services.assisted.approve(request.user, link_id))

    @post(
        "/helpers/{link_id:uuid}/revocation",
        status_code=200,
        summary="End a relative's help, or decline their request, at any time",
        responses=problems(NOT_LINKED, LINK_NOT_FOUND),
    )
    async def revoke(
        self, link_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLink:
        return s.link_of(await services.assisted.revoke_as_elder(request.user, link_id))


class RelativeLinkAdminController(Controller):
    path = "/v1/admin/relative-links"
    tags = ["administration"]
    guards = [requires(OPERATOR, ADMIN)]
    security = BEARER

    @post(
        "/consent",
        status_code=200,
        summary="Record the elder's consent to a relative's request, given in person, with a reason (audited)",
        responses=problems(
            *STAFF_REASON_REFUSALS, *PERSON_REFUSALS, LINK_NOT_FOUND, LINK_CLOSED, DECEASED, HELPERS_LIMIT
        ),
    )
    async def consent(
        self, data: s.InPersonLinkDecision, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLink:
        link = await services.assisted.consent_in_person(
            request.user, data.elder_national_id, data.helper_national_id, data.reason
        )
        return s.link_of(link)

    @post(
        "/revocation",
        status_code=200,
        summary="End a relative's link for the elder, with a reason (audited)",
        responses=problems(*STAFF_REASON_REFUSALS, *PERSON_REFUSALS, LINK_NOT_FOUND),
    )
    async def revoke(
        self, data: s.InPersonLinkDecision, request: Request[Principal, Any, Any], services: Services
    ) -> s.RelativeLink:
        link = await services.assisted.revoke_in_person(
            request.user, data.elder_national_id, data.helper_national_id, data.reason
        )
        return s.link_of(link)
