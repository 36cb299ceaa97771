"""The console's browser session: an HttpOnly cookie, a form token on every post, role guards.

The console never looks at a bearer token: a cardholder's or an operator's API token opens no page.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.services import Services
from auth.service import ConsoleSession
from core.errors import Forbidden

PATH = "/console"
COOKIE = "console_session"
PRE_SIGN_IN_COOKIE = "console_sign_in"  # the sign-in form's token, before any session exists
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ConsoleGuard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class SignInRequired(Exception):
    """No live console session: the browser is sent to the sign-in page."""


class FormTokenInvalid(Forbidden):
    code = "console_form_expired"


def session_of(request: ASGIConnection[Any, Any, Any, Any]) -> ConsoleSession:
    """The session the guard resolved for this request."""
    session: ConsoleSession = request.state.console
    return session


def requires_console(*roles: str) -> ConsoleGuard:
    """A live console session of one of these roles; on a post, the session's form token as well."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        secret = connection.cookies.get(COOKIE)
        services: Services = connection.app.state.services
        session = await services.auth.console_session(secret) if secret else None
        if session is None:
            raise SignInRequired()
        connection.state.console = session
        if session.principal.role not in roles:
            raise Forbidden()
        if isinstance(connection, Request) and connection.method not in SAFE_METHODS:
            await check_form_token(connection, session.csrf_token)

    return guard


def same_token(sent: object, expected: str) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode())


async def check_form_token(request: Request[Any, Any, Any], expected: str) -> None:
    """A post must come from a console page: its own origin, and the form token that page was given.
    (SameSite=Strict already keeps the cookie off cross-site posts; this holds even where it does not.)"""
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin != _own_origin(request):
        raise FormTokenInvalid()
    if not same_token((await request.form()).get("csrf"), expected):
        raise FormTokenInvalid()


def _own_origin(request: Request[Any, Any, Any]) -> str:
    configured: str | None = request.app.state.services.settings.console_origin
    return configured or f"{request.url.scheme}://{request.headers.get('host', '')}"


def set_cookie(response: Response[Any], request: Request[Any, Any, Any], name: str, value: str, max_age: int) -> None:
    secure = request.url.scheme == "https" or _own_origin(request).startswith("https://")
    response.set_cookie(name, value, path=PATH, max_age=max_age, httponly=True, secure=secure, samesite="strict")


def clear_cookie(response: Response[Any], name: str) -> None:
    response.delete_cookie(name, path=PATH)


def console_headers(s3_origin: str | None) -> list[tuple[bytes, bytes]]:
    """The headers of every answer under /console: no caching of personal data, no framing, nothing
    run or loaded from elsewhere but the object store's presigned images."""
    images = f"'self' {s3_origin}" if s3_origin else "'self' https:"
    return [
        (
            b"content-security-policy",
            (
                f"default-src 'self'; img-src {images}; style-src 'self'; script-src 'self'; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ).encode(),
        ),
        (b"cache-control", b"no-store"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
