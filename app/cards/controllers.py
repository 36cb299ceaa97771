from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter

from app.auth.guards import requires
from app.auth.principal import CARDHOLDER, TERMINAL, Principal
from app.cards.schemas import Activation, Card, QrCode, QrHolder, QrVerification
from app.cards.service import CardView
from app.schemas import BEARER
from app.services import Services


def _card(view: CardView) -> Card:
    return Card(
        card_number=view.card_number,
        status=view.status,  # type: ignore[arg-type]
        masked_national_id=view.masked_national_id,
        name=view.name,
        issued_on=view.issued_on,
        activated_at=view.activated_at,
    )


class CardController(Controller):
    path = "/v1/card"
    tags = ["e-card"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @get("/", summary="The signed-in person's e-card")
    async def get_card(self, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.get(request.user))

    @post("/activation", status_code=200, summary="Activate the e-card of the person registered with this phone")
    async def activate(self, data: Activation, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.activate(request.user, data.national_id))

    @post("/loss", status_code=200, summary="Report the card lost: blocks new QR codes and charges at once")
    async def report_loss(self, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.report_loss(request.user))

    @post("/recovery", status_code=200, summary="Cancel a loss report")
    async def recover(self, request: Request[Principal, Any, Any], services: Services) -> Card:
        return _card(await services.cards.recover(request.user))

    @post("/qr", status_code=201, summary="Mint a dynamic QR code (60 s, single use, bound to this device)")
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


class TerminalQrController(Controller):
    path = "/v1/terminal/qr"
    tags = ["terminals"]
    guards = [requires(TERMINAL)]
    security = BEARER

    @post("/verify", status_code=200, summary="Consume a QR code and identify its holder")
    async def verify(self, data: QrVerification, request: Request[Principal, Any, Any], services: Services) -> QrHolder:
        holder = await services.cards.verify_qr(request.user, data.token)
        return QrHolder(
            card_number=holder.card_number,
            card_status=holder.card_status,  # type: ignore[arg-type]
            name=holder.name,
            masked_national_id=holder.masked_national_id,
        )
