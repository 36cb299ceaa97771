"""Resolves the bearer credential to a Principal; the route guards decide what it may do.

It never refuses a request itself, so every refusal is rendered by the route's exception
handling (with the request id and the caller's language).
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

INVALID_CREDENTIAL = "invalid"


def bearer_auth_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, credential = header.partition(" ")
            scope["user"] = None
            scope["auth"] = None
            if scheme.lower() == "bearer" and credential.strip():
                services = scope["litestar_app"].state.services
                principal = await services.auth.resolve(credential.strip())
                scope["user"] = principal
                scope["auth"] = None if principal is not None else INVALID_CREDENTIAL
        await app(scope, receive, send)

    return middleware
