"""Resolves the bearer credential to a Principal; the route guards decide what it may do. Notes the
client's address for the per-client limits (auth.client).

It never refuses a request itself, so every refusal is rendered by the route's exception
handling (with the request id and the caller's language).
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from auth.client import reset_client, set_client
from auth.rules import client_key

INVALID_CREDENTIAL = "invalid"


def bearer_auth_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        services = scope["litestar_app"].state.services
        trusted = services.settings.client_ip_header
        claimed = headers.get(trusted.encode(), b"").decode("latin-1") if trusted else None
        peer = scope.get("client")
        noted = set_client(client_key(peer[0] if peer else None, claimed))
        try:
            header = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, credential = header.partition(" ")
            scope["user"] = None
            scope["auth"] = None
            if scheme.lower() == "bearer" and credential.strip():
                principal = await services.auth.resolve(credential.strip())
                scope["user"] = principal
                scope["auth"] = None if principal is not None else INVALID_CREDENTIAL
            await app(scope, receive, send)
        finally:
            # A transport that runs the app in its caller's task (httpx's ASGI transport) would keep it.
            reset_client(noted)

    return middleware
