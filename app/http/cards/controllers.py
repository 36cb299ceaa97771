from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from app.http.auth.guards import requires
from app.http.auth.refusals import CHECKING_CODE, SENDING_CODE
from app.http.auth.schemas import OtpSent
from app.http.cards.schemas import (
    Activation,
    Card,
    QrCode,
    QrHolder,
    QrVerification,
    Recovery,
    RecoveryApprovalRequest,
    RecoveryApproved,
)
from app.http.locale import request_locale
from app.http.openapi import problems
from app.http.schemas import BEARER
from app.services import Services
from cards.service import CardView
from core.errors import BadRequest, Conflict, Forbidden, Gone, NotFound
from core.principal import ADMIN, CARDHOLDER, OPERATOR, TERMINAL, Principal


def _card(view: CardView) -> Card:
    return Card(
        card_number=view.card_number,
        status=view.status,  # type: ignore[arg-type]
        masked_national_id=view.masked_national_id,
        name=view.name,
        issued_on=view.issued_on,
        activated_at=view.activated_at,
    )


# The holder's card under /v1/card, and the operators' side of a loss report under /v1/admin: one
# controller (the app registers this one), so each route names its own guard.
_HOLDER = [requires(CARDHOLDER)]
NO_CARD = NotFound("card_not_activated")
NOT_ACTIVE = Conflict("card_not_active", card_status="reported_lost")
NOT_LOST = (Conflict("card_not_lost"), Conflict("recovery_proof_required"))


class CardController(Controller):
    path = "/v1"
    tags = ["e-card"]
    security = BEARER

    @get("/card", guards=_HOLDER, summary="The signed-in person's e-card", responses=problems(NO_CARD))
    async def get_card(self, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.get(request.user))

    @post(
        "/card/activation",
        guards=_HOLDER,
        status_code=200,
        summary="Activate the e-card of the person registered with this phone",
        responses=problems(
            BadRequest("activation_mismatch"),
            Forbidden("activation_mismatch"),
            Conflict("certification_required"),
            Conflict("card_cancelled"),
        ),
    )
    async def activate(self, data: Activation, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.activate(request.user, data.national_id))

    @post(
        "/card/loss",
        guards=_HOLDER,
        status_code=200,
        summary="Report the card lost: blocks QR codes at once and signs out the person's other devices",
        responses=problems(NO_CARD, NOT_ACTIVE),
    )
    async def report_loss(self, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.report_loss(request.user))

    @post(
        "/card/recovery/code",
        guards=_HOLDER,
        status_code=HTTP_202_ACCEPTED,
        summary="Send a code for cancelling the loss report to the registered phone (409 recovery_proof_required "
        "until a face check passed since the report, or an operator vouched for the person)",
        responses=problems(NO_CARD, *NOT_LOST, *SENDING_CODE),
    )
    async def send_recovery_code(self, request: Request[Principal, Any, Any], services: Services) -> OtpSent:
        ttl = await services.cards.send_recovery_code(request.user, request_locale(request), services.sms)
        return OtpSent(expires_in=ttl)

    @post(
        "/card/recovery",
        guards=_HOLDER,
        status_code=200,
        summary="Cancel the loss report with the code sent by POST /v1/card/recovery/code",
        responses=problems(NO_CARD, *NOT_LOST, *CHECKING_CODE),
    )
    async def recover(self, data: Recovery, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.recover(request.user, data.code))

    @post(
        "/admin/card-recoveries",
        guards=[requires(OPERATOR, ADMIN)],
        status_code=200,
        summary="Vouch for a person whose card is reported lost (checked in person), with a reason: "
        "they then cancel the report with a new code",
        responses=problems(
            BadRequest("reason_required"), BadRequest("national_id_invalid"), NotFound("person_not_found"), NOT_LOST[0]
        ),
    )
    async def approve_recovery(
        self, data: RecoveryApprovalRequest, request: Request[Principal, Any, Any], services: Services
    ) -> RecoveryApproved:
        approval = await services.cards.approve_recovery(request.user, data.national_id, data.reason)
        card = approval.card
        return RecoveryApproved(
            card_number=card.card_number,
            card_status=card.status,  # type: ignore[arg-type]
            masked_national_id=card.masked_national_id,
            approved_at=approval.approved_at,
        )

    @post(
        "/card/qr",
        guards=_HOLDER,
        status_code=201,
        summary="Mint a dynamic QR code (60 s, single use, bound to this device)",
        responses=problems(Forbidden("device_required"), NO_CARD, NOT_ACTIVE),
    )
    async def mint_qr(
        self,
        request: Request[Principal, Any, Any],
        services: Services,
        svg: Annotated[
            bool, Parameter(description="include an SVG rendering (apps that draw the code can skip it)")
        ] = True,
    ) -> QrCode:
        minted = await services.cards.mint_qr(request.user, render_svg=svg)
        return QrCode(token=minted.token, expires_at=minted.expires_at, svg=minted.svg)


# What consuming a QR code refuses (cards.service.consume_qr): a verify, and a charge that pays with it.
QR = (BadRequest("qr_invalid"), Gone("qr_expired"), Conflict("qr_used"), Conflict("qr_card_unusable"))


class TerminalQrController(Controller):
    path = "/v1/terminal/qr"
    tags = ["terminals"]
    guards = [requires(TERMINAL)]
    security = BEARER

    @post("/verify", status_code=200, summary="Consume a QR code and identify its holder", responses=problems(*QR))
    async def verify(self, data: QrVerification, request: Request[Principal, Any, Any], services: Services) -> QrHolder:
        holder = await services.cards.verify_qr(request.user, data.token)
        return QrHolder(
            card_number=holder.card_number,
            card_status=holder.card_status,  # type: ignore[arg-type]
            name=holder.name,
            masked_national_id=holder.masked_national_id,
        )
