from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from app.http.certification.schemas import ActionName, CheckStatus
from app.http.schemas import Body, StaffReason, to_schema
from review.service import ReviewPage, ReviewView

ReviewStatus = Literal["needs_review", "home_visit"]


class QueuedCheck(Body):
    id: uuid.UUID
    status: CheckStatus
    reasons: list[str]
    scores: dict[str, Any]
    submitted_at: datetime
    region: str
    masked_national_id: str
    claimed_by: uuid.UUID | None
    claimed_by_name: str | None
    claimed_until: datetime | None


class ReviewQueue(Body):
    items: list[QueuedCheck]
    next_cursor: str | None


class Claim(Body):
    check_id: uuid.UUID
    claimed_until: datetime


class DetectedAction(Body):
    action: ActionName
    at_s: float
    strength: float
    until_s: float | None = None  # the action's last sample (checks analysed since the strict challenges)
    settled_s: float | None = None  # when the face was back to neutral after it


class CheckForReview(Body):
    id: uuid.UUID
    status: CheckStatus
    worker_outcome: str | None
    challenged_actions: list[ActionName]
    detected_actions: list[DetectedAction]
    reasons: list[str]
    scores: dict[str, Any]
    submitted_at: datetime
    replay_of: uuid.UUID | None
    name: str
    masked_national_id: str
    region: str
    claimed_until: datetime | None
    media_purged: bool  # the video and its frames were deleted at the end of the retention period
    # The images come by default only to the operator holding the check's claim while it is under
    # review; anyone else gets them (once) by asking with a reason: POST …/{id}/media-access.
    images_withheld: bool
    frame_urls: list[str]
    reference_url: str | None
    urls_expire_in: int
    # A relative filmed the person on their own phone (certification.assisted): who, what they are to
    # the person, and the device; none for a person's own check.
    assisted_by_name: str | None = None
    assisted_by_masked_national_id: str | None = None
    assisted_relationship: str | None = None
    assisted_device: str | None = None


DecisionKind = Literal["approve", "reject", "home_visit"]


class ReviewDecision(Body):  # not "Decision": a generated client names a local after the model
    decision: DecisionKind
    reason: StaffReason


class MediaAccess(Body):
    """A request for the images of a check one does not hold under review (decided, or never sent to review)."""

    reason: StaffReason


class Decided(Body):
    check_id: uuid.UUID
    status: CheckStatus


def review_queue_of(page: ReviewPage) -> ReviewQueue:
    return ReviewQueue(items=[to_schema(QueuedCheck, row) for row in page.rows], next_cursor=page.next_cursor)


def check_for_review_of(view: ReviewView) -> CheckForReview:
    return to_schema(
        CheckForReview,
        view.row,
        frame_urls=view.frame_urls,
        reference_url=view.reference_url,
        urls_expire_in=view.urls_expire_in,
        media_purged=view.media_purged,
        images_withheld=view.images_withheld,
    )
