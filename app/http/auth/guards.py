"""Role guards: every route names the roles that may call it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.http.auth.middleware import INVALID_CREDENTIAL
from core.errors import AppError, Forbidden, Unauthorized
from core.principal import ADMIN, AUDITOR, CARDHOLDER, OPERATOR, TERMINAL, Principal

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]

ROLES = frozenset({CARDHOLDER, OPERATOR, AUDITOR, ADMIN, TERMINAL})


@dataclass(frozen=True)
class RoleGuard:
    roles: frozenset[str]

    def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.scope.get("user")
        if not isinstance(user, Principal):
            raise Unauthorized("token_invalid" if connection.scope.get("auth") == INVALID_CREDENTIAL else None)
        if user.role not in self.roles:
            raise Forbidden()

    @property
    def refusals(self) -> tuple[AppError, ...]:
        """What it may answer, for the OpenAPI document (app.http.openapi reads it from every guard)."""
        wrong_role = () if self.roles >= ROLES else (Forbidden(),)
        return (Unauthorized(), Unauthorized("token_invalid"), *wrong_role)


def requires(*roles: str) -> Guard:
    return RoleGuard(frozenset(roles))
