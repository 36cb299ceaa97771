from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body, to_schema
from certification import service as domain

ActionName = Literal["blink", "turn_left", "turn_right", "open_mouth"]
CheckStatus = Literal["queued", "processing", "passed", "failed", "needs_review", "retry", "home_visit"]


class Consent(Body):
    granted_at: datetime
    text_version: str


class PresignedPost(Body):
    """Upload the video straight to object storage: POST multipart/form-data to `url` with every
    field in `fields`, `key` = `key_prefix` + a file name, a `Content-Type` of video/mp4,
    video/quicktime or video/webm, and the file last; then submit the key."""

    url: str
    fields: dict[str, str]
    key_prefix: str
    max_bytes: int


class DirectUpload(Body):
    """POST multipart/form-data to `url`: one `video` file (mp4, mov or webm), or 5-30 `frames` JPEG files."""

    url: str
    max_bytes: int


class UploadOptions(Body):
    direct: DirectUpload
    presigned_post: PresignedPost


class Challenge(Body):
    id: uuid.UUID
    # In order; named from the person's own point of view (turn_left: turn the head to their left).
    actions: list[ActionName]
    expires_at: datetime
    upload: UploadOptions


class StoredSubmission(Body):
    s3_key: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class CheckAccepted(Body):
    check_id: uuid.UUID
    status: CheckStatus


class ReasonOut(Body):
    code: str
    text: str
    advice: str


class Check(Body):
    id: uuid.UUID
    status: CheckStatus
    actions: list[ActionName]
    reasons: list[ReasonOut]
    submitted_at: datetime
    decided_at: datetime | None
    # The relative who filmed the person on their phone for this check (certification.assisted), by name.
    assisted_by: str | None = None


class CertificationStatus(Body):
    eligible_until: date | None
    due_date: date | None
    last_check: Check | None
    attempts_left: int
    consent_given: bool


def check_of(view: domain.CheckView) -> Check:
    reasons = [ReasonOut(code=r.code, text=r.text, advice=r.advice) for r in view.reasons]
    return to_schema(Check, view.row, reasons=reasons)


def challenge_of(challenge: domain.NewChallenge, challenges_url: str) -> Challenge:
    return msgspec.convert(
        {
            "id": challenge.id,
            "actions": list(challenge.actions),
            "expires_at": challenge.expires_at,
            "upload": {
                "direct": {"url": f"{challenges_url}{challenge.id}/submission", "max_bytes": challenge.max_bytes},
                "presigned_post": {
                    "url": challenge.post_url,
                    "fields": challenge.post_fields,
                    "key_prefix": challenge.key_prefix,
                    "max_bytes": challenge.max_bytes,
                },
            },
        },
        Challenge,
    )


def status_of(status: domain.CertificationStatus) -> CertificationStatus:
    return CertificationStatus(
        eligible_until=status.eligible_until,
        due_date=status.due_date,
        last_check=check_of(status.last_check) if status.last_check is not None else None,
        attempts_left=status.attempts_left,
        consent_given=status.consent_given,
    )
