from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post

from app.http.auth.guards import requires
from app.http.openapi import problems
from app.http.paging import Cursor, Limit
from app.http.review import schemas as s
from app.http.schemas import BEARER, STAFF_REASON_REFUSALS
from app.services import Services
from core.errors import Conflict, NotFound
from core.principal import OPERATOR, Principal

NO_CHECK = NotFound("check_not_found")
CLAIM_REQUIRED = Conflict("claim_required")
UNREVIEWABLE = Conflict("check_not_reviewable")


class ReviewController(Controller):
    path = "/v1/review/checks"
    tags = ["review"]
    guards = [requires(OPERATOR)]
    security = BEARER

    @get("/", summary="Checks waiting for a person, oldest first")
    async def queue(
        self,
        services: Services,
        status: s.ReviewStatus = "needs_review",
        reason: str | None = None,
        region: str | None = None,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> s.ReviewQueue:
        return s.review_queue_of(await services.review.queue(status, cursor, limit, reason=reason, region=region))

    @post(
        "/{check_id:uuid}/claim",
        status_code=200,
        summary="Claim a check for 15 minutes (one operator at a time)",
        responses=problems(NO_CHECK, UNREVIEWABLE, Conflict("check_claimed", operator="Reviewer")),
    )
    async def claim(self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> s.Claim:
        return s.Claim(check_id=check_id, claimed_until=await services.review.claim(request.user, check_id))

    @get(
        "/{check_id:uuid}",
        summary="A check: scores, reasons, actions; 5-minute links to frames and reference for the claim holder only",
        responses=problems(NO_CHECK, CLAIM_REQUIRED),
    )
    async def view(
        self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.CheckForReview:
        return s.check_for_review_of(await services.review.view(request.user, check_id))

    @post(
        "/{check_id:uuid}/media-access",
        status_code=200,
        summary="The images of a check not held under review, for a reason kept in the audit log (5-minute links)",
        responses=problems(*STAFF_REASON_REFUSALS, NO_CHECK, CLAIM_REQUIRED),
    )
    async def media_access(
        self, check_id: uuid.UUID, data: s.MediaAccess, request: Request[Principal, Any, Any], services: Services
    ) -> s.CheckForReview:
        return s.check_for_review_of(await services.review.view(request.user, check_id, reason=data.reason))

    @post(
        "/{check_id:uuid}/decision",
        status_code=200,
        summary="Approve, reject or order a home visit, with a reason",
        responses=problems(*STAFF_REASON_REFUSALS, NO_CHECK, UNREVIEWABLE, CLAIM_REQUIRED),
    )
    async def decide(
        self, check_id: uuid.UUID, data: s.ReviewDecision, request: Request[Principal, Any, Any], services: Services
    ) -> s.Decided:
        status = await services.review.decide(request.user, check_id, data.decision, data.reason.strip())
        return s.Decided(check_id=check_id, status=status)  # type: ignore[arg-type]
