"""Security headers, set once for every answer by a before-send hook (it sees them all: errors,
unknown paths and the exception handler's answers included)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.types import Message, Scope

DOCS_PATH = "/schema"
OPENAPI_DOCUMENT = DOCS_PATH + "/openapi.json"

Headers = list[tuple[bytes, bytes]]

# The API answers with JSON (or a CSV download) that may carry personal data: nothing in it is to be
# kept by a cache, read as another type, run, or shown inside another page.
API_HEADERS: Headers = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def security_headers(
    console: Headers, *, console_path: str, docs_ui: bool
) -> Callable[[Message, Scope], Awaitable[None]]:
    """The console's own headers under /console and the API's everywhere else, except the pages of
    the docs UI when development turned it on (they run an inline script, and load the UI's scripts and
    styles from /schema/assets)."""
    console_names = {name for name, _ in console}
    api_names = {name for name, _ in API_HEADERS}

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        path: str = scope["path"]
        if _under(path, console_path):
            headers, names = console, console_names
        elif docs_ui and _under(path, DOCS_PATH) and path != OPENAPI_DOCUMENT:
            return
        else:
            headers, names = API_HEADERS, api_names
        kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
        message["headers"] = [*kept, *headers]

    return hook
