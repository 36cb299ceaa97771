"""Role guards: every route names the roles that may call it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.http.auth.middleware import INVALID_CREDENTIAL
from core.errors import Forbidden, Unauthorized
from core.principal import Principal

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def requires(*roles: str) -> Guard:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.scope.get("user")
        if not isinstance(user, Principal):
            raise Unauthorized("token_invalid" if connection.scope.get("auth") == INVALID_CREDENTIAL else None)
        if user.role not in roles:
            raise Forbidden()

    return guard
