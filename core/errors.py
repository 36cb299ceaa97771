"""The exception hierarchy: what a use case refuses, by a stable `code` (app.http.problems renders it).

Services raise AppError subclasses with a stable ``code``; app.http.problems (the API) and the console
render its words in the caller's language from the catalogue. Nothing reaches a client as a stack trace.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 400
    code = "invalid_body"

    def __init__(self, code: str | None = None, *, headers: dict[str, str] | None = None, **params: Any) -> None:
        super().__init__(code or self.code)
        self.code = code or self.code
        self.params = params
        self.headers = headers or {}


class BadRequest(AppError):
    status = 400


class Unauthorized(AppError):
    status = 401
    code = "unauthenticated"


class PaymentRequired(AppError):
    status = 402


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409


class Gone(AppError):
    status = 410


class Unprocessable(AppError):
    status = 422


class UnsupportedMedia(AppError):
    status = 415
    code = "not_a_video"


class TooManyRequests(AppError):
    status = 429


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
