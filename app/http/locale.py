"""The language a request asks for."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection

from core.text import negotiate


def request_locale(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The language the app asked for (Accept-Language)."""
    return negotiate(request.headers.get("accept-language"))
