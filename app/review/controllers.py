from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter

from app.auth.guards import requires
from app.auth.principal import OPERATOR, Principal
from app.errors import BadRequest
from app.review import schemas as s
from app.schemas import BEARER
from app.services import Services


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
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    ) -> s.ReviewQueue:
        items, next_cursor = await services.review.queue(status, cursor, limit)
        return s.ReviewQueue(
            items=[
                s.QueuedCheck(
                    id=i.id,
                    status=i.status,  # type: ignore[arg-type]
                    reasons=list(i.reasons),
                    scores=i.scores,
                    submitted_at=i.submitted_at,
                    region=i.region,
                    masked_national_id=i.masked_national_id,
                    claimed_by=i.claimed_by,
                    claimed_until=i.claimed_until,
                )
                for i in items
            ],
            next_cursor=next_cursor,
        )

    @post("/{check_id:uuid}/claim", status_code=200, summary="Claim a check for 15 minutes (one operator at a time)")
    async def claim(self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> s.Claim:
        return s.Claim(check_id=check_id, claimed_until=await services.review.claim(request.user, check_id))

    @get("/{check_id:uuid}", summary="A claimed check: scores, reasons, and 5-minute links to frames and reference")
    async def view(
        self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.CheckForReview:
        v = await services.review.view(request.user, check_id)
        return s.CheckForReview(
            id=v.id,
            status=v.status,  # type: ignore[arg-type]
            worker_outcome=v.worker_outcome,
            challenged_actions=list(v.actions),  # type: ignore[arg-type]
            detected_actions=[s.DetectedAction(**a) for a in v.actions_detected],
            reasons=list(v.reasons),
            scores=v.scores,
            submitted_at=v.submitted_at,
            replay_of=v.replay_of,
            name=v.name,
            masked_national_id=v.masked_national_id,
            region=v.region,
            claimed_until=v.claimed_until,
            frame_urls=list(v.frame_urls),
            reference_url=v.reference_url,
            urls_expire_in=v.urls_expire_in,
        )

    @post("/{check_id:uuid}/decision", status_code=200, summary="Approve, reject or order a home visit, with a reason")
    async def decide(
        self, check_id: uuid.UUID, data: s.Decision, request: Request[Principal, Any, Any], services: Services
    ) -> s.Decided:
        if not data.reason.strip():
            raise BadRequest("reason_required")
        status = await services.review.decide(request.user, check_id, data.decision, data.reason.strip())
        return s.Decided(check_id=check_id, status=status)  # type: ignore[arg-type]
