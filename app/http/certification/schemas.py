from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body

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


class CertificationStatus(Body):
    eligible_until: date | None
    due_date: date | None
    last_check: Check | None
    attempts_left: int
    consent_given: bool
