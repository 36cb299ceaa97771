from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import UploadFile
from litestar.openapi.spec import Encoding, OpenAPIFormat, OpenAPIMediaType, OpenAPIType, RequestBody, Schema
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from app.http.auth.guards import requires
from app.http.bodies import JSON_MEDIA_TYPE, is_json, read_json
from app.http.certification import schemas as s
from app.http.openapi import BODY_TOO_LARGE, INVALID_BODY, NOT_LINKED, ApiOperation, problems, struct_schema
from app.http.schemas import BEARER
from app.services import Services
from certification.repository import CONSENT_TEXT_VERSION
from certification.service import UploadMedia
from certification.uploads import MAX_FRAMES, MIN_FRAMES, UPLOAD_MAX_BYTES, check_frames, check_video
from core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    TooManyRequests,
    Unprocessable,
    UnsupportedMedia,
)
from core.principal import CARDHOLDER, Principal

# Room for the multipart envelope around the largest allowed upload.
SUBMISSION_MAX_BODY = UPLOAD_MAX_BYTES + 256 * 1024


async def _multipart_media(request: Request[Any, Any, Any]) -> UploadMedia:
    form = await request.form()
    videos, frames = form.getall("video", []), form.getall("frames", [])
    unknown = set(form.keys()) - {"video", "frames"}
    if unknown or bool(videos) == bool(frames) or len(videos) > 1:
        raise BadRequest("submission_parts")
    if not all(isinstance(part, UploadFile) for part in (*videos, *frames)):
        raise BadRequest("submission_parts")
    if videos:
        data = await videos[0].read()
        return UploadMedia("video", ((data, check_video(data)),))
    blobs = [await part.read() for part in frames]
    check_frames(blobs)
    return UploadMedia("frames", tuple((blob, "image/jpeg") for blob in blobs))


async def read_submission(request: Request[Any, Any, Any]) -> UploadMedia | s.StoredSubmission:
    """The selfie a submission carries: a multipart upload, or the key of a presigned one (JSON)."""
    if request.content_type[0] == "multipart/form-data":
        return await _multipart_media(request)
    if is_json(request.content_type):
        return read_json(await request.body(), s.StoredSubmission)
    raise UnsupportedMedia("submission_content_type")


# What a submission may be refused for, whoever submits it (the person, or a relative for them).
SUBMISSION_REFUSALS = (
    BadRequest("submission_parts"),
    BadRequest("upload_empty"),
    INVALID_BODY,
    NOT_LINKED,
    Forbidden("consent_required"),
    NotFound("challenge_not_found"),
    Conflict("challenge_used"),
    Gone("challenge_expired"),
    BODY_TOO_LARGE,
    UnsupportedMedia("not_a_video"),
    UnsupportedMedia("not_jpeg"),
    UnsupportedMedia("submission_content_type"),
    Unprocessable("upload_too_large", max_mb=UPLOAD_MAX_BYTES // (1024 * 1024)),
    Unprocessable("frames_count", low=MIN_FRAMES, high=MAX_FRAMES),
    Unprocessable("upload_key_invalid"),
    Unprocessable("upload_missing"),
)
# What starting a challenge may be refused for.
CHALLENGE_REFUSALS = (
    NOT_LINKED,
    Conflict("person_deceased"),
    Conflict("certification_under_review"),
    TooManyRequests("challenge_rate_limited"),
)


@dataclass
class SubmissionOperation(ApiOperation):
    """The handler reads its body itself (a multipart upload or a JSON reference), so Litestar sees none
    to describe: both are stated here, the JSON one from the Struct that decodes it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        upload = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        form = Schema(
            type=OpenAPIType.OBJECT,
            description="exactly one of: `video`, or 5-30 `frames`",
            properties={
                "video": replace(upload, description="the selfie video (MP4, WebM or QuickTime)"),
                "frames": Schema(
                    type=OpenAPIType.ARRAY, items=upload, min_items=MIN_FRAMES, max_items=MAX_FRAMES, description="JPEG"
                ),
            },
        )
        # Not marked required: openapi-python-client (0.29) loses the requiredness of a body of two media
        # types and then types it with a name it did not import. The server refuses no body with a 415.
        self.request_body = RequestBody(
            required=False,
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=form,
                    encoding={"video": Encoding(content_type="video/*"), "frames": Encoding(content_type="image/jpeg")},
                ),
                JSON_MEDIA_TYPE: OpenAPIMediaType(schema=struct_schema(s.StoredSubmission)),
            },
        )


class ConsentController(Controller):
    path = "/v1/consents"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post(
        "/biometric",
        status_code=200,
        summary="Consent to the processing of face images for certification",
        responses=problems(NOT_LINKED),
    )
    async def grant(self, request: Request[Principal, Any, Any], services: Services) -> s.Consent:
        granted = await services.certification.grant_consent(request.user)
        return s.Consent(granted_at=granted, text_version=CONSENT_TEXT_VERSION)

    @delete(
        "/biometric",
        status_code=HTTP_204_NO_CONTENT,
        summary="Withdraw consent to face processing",
        responses=problems(NOT_LINKED),
    )
    async def withdraw(self, request: Request[Principal, Any, Any], services: Services) -> None:
        await services.certification.withdraw_consent(request.user)


class CertificationController(Controller):
    path = "/v1/certifications"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post(
        "/challenges",
        status_code=201,
        summary="Start a certification: random actions and where to upload",
        responses=problems(*CHALLENGE_REFUSALS),
    )
    async def new_challenge(self, request: Request[Principal, Any, Any], services: Services) -> s.Challenge:
        challenges_url = str(request.url.with_replacements(path=f"{self.path}/challenges/", query=""))
        return s.challenge_of(await services.certification.new_challenge(request.user), challenges_url)

    @post(
        "/challenges/{challenge_id:uuid}/submission",
        status_code=HTTP_202_ACCEPTED,
        request_max_body_size=SUBMISSION_MAX_BODY,
        summary="Submit the selfie: multipart (`video`, or 5-30 `frames`) or JSON {s3_key} of a presigned upload",
        operation_class=SubmissionOperation,
        responses=problems(*SUBMISSION_REFUSALS),
    )
    async def submit(
        self, challenge_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.CheckAccepted:
        media = await read_submission(request)
        if isinstance(media, UploadMedia):
            check_id = await services.certification.submit_upload(request.user, challenge_id, media)
        else:
            check_id = await services.certification.submit_stored(request.user, challenge_id, media.s3_key)
        return s.CheckAccepted(check_id=check_id, status="queued")

    @get(
        "/checks/{check_id:uuid}",
        summary="A check's status, reasons and advice",
        responses=problems(NOT_LINKED, NotFound("check_not_found")),
    )
    async def check(self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> s.Check:
        return s.check_of(await services.certification.check(request.user, check_id))

    @get("/status", summary="Eligibility, due date, last result and attempts left", responses=problems(NOT_LINKED))
    async def status(self, request: Request[Principal, Any, Any], services: Services) -> s.CertificationStatus:
        return s.status_of(await services.certification.status(request.user))
