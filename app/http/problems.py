"""Every exception as an RFC 9457 problem+json answer, in the caller's language; nothing reaches
the client as a stack trace."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.http.locale import request_locale
from app.http.schemas import Body
from core.errors import AppError
from core.text import message
from infra import faults
from infra.logging import request_id_var

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

RETRY_AFTER_S = 5  # when a client may try again after a dependency failed


class ProblemItem(Body):
    """One item of a refusal about many: a field of the body, or a line of a file."""

    field: str | None = None
    message: str | None = None
    line: int | None = None
    reason: str | None = None


class ProblemDetails(Body, omit_defaults=True):
    """The body of every refusal (RFC 9457), as `problem` writes it: the OpenAPI document's
    ProblemDetails, and what the tests check real answers against."""

    type: Annotated[str, msgspec.Meta(examples=["urn:socialcard:problem:not_found"])]
    title: str
    status: int
    detail: Annotated[str, msgspec.Meta(description="the message in the caller's language (Accept-Language)")]
    code: Annotated[str, msgspec.Meta(description="stable: what a client branches on", examples=["not_found"])]
    instance: Annotated[str, msgspec.Meta(description="the request's path")]
    request_id: Annotated[str | None, msgspec.Meta(description="also in the X-Request-Id header and the logs")] = None
    errors: list[ProblemItem] | None = None


@dataclass(frozen=True)
class Problem:
    """What went wrong, before it is rendered: problem+json for the API, a page for the console."""

    status: int
    code: str
    params: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    headers: dict[str, str] | None = None


def classify(request: Request[Any, Any, Any], exc: Exception) -> Problem:
    """Every exception as a Problem; one that is not ours is logged and shown as a 500 without detail."""
    if isinstance(exc, AppError):
        # An `errors` parameter is the per-item list (lines of a file), not part of the message.
        params = dict(exc.params)
        errors = params.pop("errors", None)
        return Problem(exc.status, exc.code, params, errors, exc.headers)
    if isinstance(exc, ValidationException):
        errors = [
            {"field": str(e.get("key") or ""), "message": str(e.get("message") or "")}
            for e in (exc.extra if isinstance(exc.extra, list) else [])
            if isinstance(e, dict)
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}".strip(": ") for e in errors) or str(exc.detail)
        return Problem(400, "invalid_body", {"detail": detail}, errors)
    if isinstance(exc, HTTPException):
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status_code, "invalid_body")
        if exc.status_code >= 500:
            log.error("http error", extra={"status": exc.status_code, "detail": exc.detail})
        return Problem(
            exc.status_code, code, {"detail": exc.detail} if code == "invalid_body" else {}, None, exc.headers
        )
    if isinstance(exc, asyncpg.DataError):
        # A value PostgreSQL cannot take (a NUL character, a number beyond 64 bits): the input's fault.
        log.warning("value refused by the database", extra={"path": request.url.path, "error": type(exc).__name__})
        return Problem(400, "invalid_body", {"detail": "a value cannot be stored"})
    if faults.transient(exc):
        # The database or S3 is down, frozen or overloaded: the client may try again, and the log gets
        # one line per request, not a traceback each (an outage would flood it).
        log.warning(
            "dependency unavailable",
            extra={"path": request.url.path, "error": type(exc).__name__, "detail": str(exc)[:200]},
        )
        return Problem(503, "dependency_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})
    log.exception("unhandled error", extra={"path": request.url.path})
    return Problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error")


def problem(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    params: dict[str, Any] | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    locale = request_locale(request)
    text = message(code, locale, **(params or {}))
    body: dict[str, Any] = {
        "type": f"urn:socialcard:problem:{code}",
        "title": text,
        "status": status,
        "detail": text,
        "code": code,
        "instance": request.url.path,
    }
    if (rid := request_id_var.get()) is not None:
        body["request_id"] = rid
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_json(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    found = classify(request, exc)
    return problem(request, found.status, found.code, found.params, errors=found.errors, headers=found.headers)
