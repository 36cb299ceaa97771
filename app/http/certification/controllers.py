from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import UploadFile
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from app.http.auth.guards import requires
from app.http.bodies import is_json, read_json
from app.http.certification import schemas as s
from app.http.schemas import BEARER
from app.services import Services
from certification.repository import CONSENT_TEXT_VERSION
from certification.service import UploadMedia
from certification.uploads import UPLOAD_MAX_BYTES, check_frames, check_video
from core.errors import BadRequest, UnsupportedMedia
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


class ConsentController(Controller):
    path = "/v1/consents"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post("/biometric", status_code=200, summary="Consent to the processing of face images for certification")
    async def grant(self, request: Request[Principal, Any, Any], services: Services) -> s.Consent:
        granted = await services.certification.grant_consent(request.user)
        return s.Consent(granted_at=granted, text_version=CONSENT_TEXT_VERSION)

    @delete("/biometric", status_code=HTTP_204_NO_CONTENT, summary="Withdraw consent to face processing")
    async def withdraw(self, request: Request[Principal, Any, Any], services: Services) -> None:
        await services.certification.withdraw_consent(request.user)


class CertificationController(Controller):
    path = "/v1/certifications"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @post("/challenges", status_code=201, summary="Start a certification: random actions and where to upload")
    async def new_challenge(self, request: Request[Principal, Any, Any], services: Services) -> s.Challenge:
        challenges_url = str(request.url.with_replacements(path=f"{self.path}/challenges/", query=""))
        return s.challenge_of(await services.certification.new_challenge(request.user), challenges_url)

    @post(
        "/challenges/{challenge_id:uuid}/submission",
        status_code=HTTP_202_ACCEPTED,
        request_max_body_size=SUBMISSION_MAX_BODY,
        summary="Submit the selfie: multipart (`video`, or 5-30 `frames`) or JSON {s3_key} of a presigned upload",
    )
    async def submit(
        self, challenge_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.CheckAccepted:
        if request.content_type[0] == "multipart/form-data":
            media = await _multipart_media(request)
            check_id = await services.certification.submit_upload(request.user, challenge_id, media)
        elif is_json(request.content_type):
            stored = read_json(await request.body(), s.StoredSubmission)
            check_id = await services.certification.submit_stored(request.user, challenge_id, stored.s3_key)
        else:
            raise UnsupportedMedia("submission_content_type")
        return s.CheckAccepted(check_id=check_id, status="queued")

    @get("/checks/{check_id:uuid}", summary="A check's status, reasons and advice")
    async def check(self, check_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> s.Check:
        return s.check_of(await services.certification.check(request.user, check_id))

    @get("/status", summary="Eligibility, due date, last result and attempts left")
    async def status(self, request: Request[Principal, Any, Any], services: Services) -> s.CertificationStatus:
        return s.status_of(await services.certification.status(request.user))
