"""Request ids, access logs and request metrics: every log line a request causes carries its id."""

from __future__ import annotations

import logging
import re
import time
import uuid

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from infra import metrics
from infra.logging import request_id_var

log = logging.getLogger("socialcard.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_STATE_KEY = "request_id"


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """The request id and the access line. As app middleware it runs for routes only; `socialcard serve`
    also wraps the whole app in it, so a path no route matches (a 404, a 405) is logged with its id too,
    and the inner one then passes the request through (the id is in the request's state)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or _STATE_KEY in (state := scope.setdefault("state", {})):
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = state[_STATE_KEY] = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        # Not reset afterwards: each request runs in its own task (its own context), and the app-level
        # exception handler that may answer after this returns still needs the id.
        request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            # The router notes the matched route's template in the scope (no template: no route matched).
            metrics.observe_request(scope.get("path_template"), scope.get("method"), status, seconds)
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope["path"],
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                },
            )

    return middleware
