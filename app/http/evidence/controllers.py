"""Evidence of life over HTTP: administrators import feeds and start a silent pass; operators see a
person's evidence and confirmations (audited); a person sees what confirmed them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from app.http.auth.guards import requires
from app.http.evidence import schemas as s
from app.http.schemas import BEARER
from app.services import Services
from core.errors import BadRequest, UnsupportedMedia
from core.principal import ADMIN, CARDHOLDER, OPERATOR, Principal

FEED_MAX_BYTES = 256 * 1024 * 1024
ERRORS_SHOWN = 1_000
# A feed's format by the media type it is sent as.
FEED_FORMATS = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}


class EvidenceAdminController(Controller):
    path = "/v1/admin/evidence"
    tags = ["administration"]
    guards = [requires(OPERATOR, ADMIN)]
    security = BEARER

    @post(
        "/",
        status_code=200,
        guards=[requires(ADMIN)],
        request_max_body_size=FEED_MAX_BYTES,
        summary="Import an evidence-of-life feed (text/csv or application/x-ndjson): a per-line report",
    )
    async def import_feed(
        self,
        request: Request[Principal, Any, Any],
        services: Services,
        source: Annotated[
            s.EvidenceFeed | None, Parameter(description="the source of the lines that name none", required=False)
        ] = None,
        feed: Annotated[
            str, Parameter(description="the feed's name, kept with each row", min_length=1, max_length=100)
        ] = "api",
    ) -> s.EvidenceImport:
        media_type, params = request.content_type
        fmt = FEED_FORMATS.get(media_type)
        if fmt is None or params.get("charset", "utf-8").lower() != "utf-8":
            raise UnsupportedMedia("evidence_feed_media_type")
        if "\x00" in feed:
            raise BadRequest("control_character", field="feed")
        try:
            text = (await request.body()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadRequest("body_encoding") from None
        report = await services.evidence.import_text(text, fmt, feed, request.user.actor, source)
        return s.EvidenceImport(
            recorded=report.recorded,
            unchanged=report.unchanged,
            rejected=len({e.line for e in report.errors}),
            errors=[s.LineError(line=e.line, field=e.field, reason=e.reason) for e in report.errors[:ERRORS_SHOWN]],
        )

    @get("/persons/{person_id:uuid}", summary="A person's evidence of life and the confirmations it made (audited)")
    async def person_evidence(
        self, person_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.PersonEvidence:
        trail = await services.evidence.trail_for_staff(request.user, person_id)
        return msgspec.convert(trail, s.PersonEvidence, from_attributes=True)

    @post(
        "/silent-passes",
        status_code=HTTP_202_ACCEPTED,
        guards=[requires(ADMIN)],
        summary="Start the silent pass over the persons due (or show the one running)",
    )
    async def start_pass(self, request: Request[Principal, Any, Any], services: Services) -> s.SilentPass:
        return msgspec.convert(
            await services.evidence.request_pass(request.user.actor), s.SilentPass, from_attributes=True
        )


class EvidenceController(Controller):
    path = "/v1/certifications/evidence"
    tags = ["certification"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @get("/", summary="The records that certified me without a face scan, newest first")
    async def own_evidence(self, request: Request[Principal, Any, Any], services: Services) -> s.OwnEvidence:
        trail = await services.evidence.own_trail(request.user)
        return msgspec.convert(trail, s.OwnEvidence, from_attributes=True)
