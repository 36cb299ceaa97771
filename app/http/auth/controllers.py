from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from app.http.auth.guards import requires
from app.http.auth.refusals import CHECKING_CODE, SENDING_CODE
from app.http.auth.schemas import OperatorSignIn, OtpRequest, OtpSent, OtpVerify, RefreshRequest, Tokens
from app.http.locale import request_locale
from app.http.openapi import problems
from app.http.schemas import BEARER
from app.services import Services
from auth.service import TokenPair
from core.errors import BadRequest, TooManyRequests, Unauthorized
from core.principal import ADMIN, AUDITOR, CARDHOLDER, OPERATOR, Principal


def _tokens(pair: TokenPair) -> Tokens:
    return Tokens(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        expires_in=pair.expires_in,
    )


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["sign-in"]

    @post(
        "/otp",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a sign-in code by SMS",
        responses=problems(BadRequest("invalid_phone"), *SENDING_CODE),
    )
    async def send_code(self, data: OtpRequest, services: Services, request: Request[Any, Any, Any]) -> OtpSent:
        ttl = await services.auth.send_code(data.phone, request_locale(request))
        return OtpSent(expires_in=ttl)

    @post(
        "/otp/verify",
        status_code=200,
        summary="Exchange a sign-in code for tokens",
        responses=problems(BadRequest("invalid_phone"), *CHECKING_CODE),
    )
    async def verify_code(self, data: OtpVerify, services: Services) -> Tokens:
        return _tokens(await services.auth.verify_code(data.phone, data.code, data.device_id, data.platform))

    @post(
        "/refresh",
        status_code=200,
        summary="Rotate the refresh token",
        responses=problems(Unauthorized("refresh_invalid")),
    )
    async def refresh(self, data: RefreshRequest, services: Services) -> Tokens:
        return _tokens(await services.auth.refresh(data.refresh_token))

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="End this sign-in; its tokens stop working at once",
        guards=[requires(CARDHOLDER, OPERATOR, AUDITOR, ADMIN)],
        security=BEARER,
    )
    async def logout(self, request: Request[Principal, Any, Any], services: Services) -> None:
        await services.auth.logout(request.user)

    @post(
        "/operator",
        status_code=200,
        summary="Operator sign-in with password and TOTP",
        responses=problems(
            Unauthorized("operator_credentials"),
            TooManyRequests("sign_in_rate_limited"),
            TooManyRequests("operator_locked"),
        ),
    )
    async def operator(self, data: OperatorSignIn, services: Services) -> Tokens:
        return _tokens(await services.auth.operator_sign_in(data.username, data.password, data.totp))
