"""How a failed FCM send is sorted: the exceptions are the ones firebase-admin raises, with FCM's bodies."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from firebase_admin import exceptions, messaging

from notifications.push import PushOutcome, outcome_of

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
REQUEST = httpx.Request("POST", "https://fcm.googleapis.com/v1/projects/p/messages:send")


def answer(
    status: int, rpc_status: str, error_code: str | None, *, field: str | None = None, retry_after: str | None = None
) -> httpx.Response:
    """An FCM error answer: the FcmError code and a field violation in `details`, as FCM sends them."""
    details: list[dict[str, Any]] = [{"@type": FCM_ERROR, "errorCode": error_code}] if error_code else []
    if field is not None:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": "bad"}]})
    body = {"error": {"code": status, "message": "m", "status": rpc_status, "details": details}}
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            messaging.UnregisteredError("gone", http_response=answer(404, "NOT_FOUND", "UNREGISTERED")),
            PushOutcome("token_gone", "UNREGISTERED"),
        ),
        (
            messaging.SenderIdMismatchError(
                "other sender", http_response=answer(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
            ),
            PushOutcome("token_gone", "SENDER_ID_MISMATCH"),
        ),
        (
            exceptions.InvalidArgumentError(
                "bad", http_response=answer(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.token")
            ),
            PushOutcome("token_gone", "INVALID_ARGUMENT:message.token"),
        ),
        (
            exceptions.InvalidArgumentError(
                "bad", http_response=answer(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="message.android.ttl")
            ),
            PushOutcome("failed", "INVALID_ARGUMENT:message.android.ttl"),
        ),
        (
            exceptions.InvalidArgumentError(
                "The registration token is not a valid FCM registration token",
                http_response=answer(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
            ),
            PushOutcome("token_gone", "INVALID_ARGUMENT"),
        ),
        (
            exceptions.InvalidArgumentError(
                "Message payload too big", http_response=answer(400, "INVALID_ARGUMENT", None)
            ),
            PushOutcome("failed", "INVALID_ARGUMENT"),
        ),
        (
            messaging.ThirdPartyAuthError(
                "APNs certificate", http_response=answer(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
            ),
            PushOutcome("failed", "THIRD_PARTY_AUTH_ERROR"),
        ),
        (
            exceptions.UnauthenticatedError("our credential", http_response=answer(401, "UNAUTHENTICATED", None)),
            PushOutcome("failed", "UNAUTHENTICATED"),
        ),
    ],
)
def test_permanent_errors(error: exceptions.FirebaseError, expected: PushOutcome) -> None:
    assert outcome_of(error) == expected


def test_quota_exceeded_carries_retry_after() -> None:
    error = messaging.QuotaExceededError(
        "slow down", http_response=answer(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after="7")
    )
    assert outcome_of(error) == PushOutcome("retry", "QUOTA_EXCEEDED", 7.0)


def test_retry_after_as_a_date() -> None:
    when = formatdate(time.time() + 120, usegmt=True)
    error = messaging.QuotaExceededError(
        "slow down", http_response=answer(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after=when)
    )
    outcome = outcome_of(error)
    assert outcome.state == "retry"
    assert outcome.retry_after is not None
    assert 115 <= outcome.retry_after <= 120


def test_retry_without_or_with_a_broken_retry_after() -> None:
    plain = exceptions.ResourceExhaustedError("busy", http_response=answer(429, "RESOURCE_EXHAUSTED", None))
    broken = messaging.QuotaExceededError(
        "x", http_response=answer(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after="soon")
    )
    assert outcome_of(plain) == PushOutcome("retry", "RESOURCE_EXHAUSTED")
    assert outcome_of(broken) == PushOutcome("retry", "QUOTA_EXCEEDED")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (exceptions.UnavailableError("down", http_response=answer(503, "UNAVAILABLE", "UNAVAILABLE")), "UNAVAILABLE"),
        (exceptions.InternalError("oops", http_response=answer(500, "INTERNAL", "INTERNAL")), "INTERNAL"),
        # What firebase-admin makes of httpx's own errors: no response at all.
        (exceptions.DeadlineExceededError("timed out", cause=httpx.ReadTimeout("t")), "DEADLINE_EXCEEDED"),
        (exceptions.UnavailableError("refused", cause=httpx.ConnectError("c")), "UNAVAILABLE"),
        (exceptions.UnknownError("reset", cause=httpx.RemoteProtocolError("r")), "UNKNOWN"),
        # A proxy's 502 without a Google error body.
        (
            exceptions.UnknownError("bad gateway", http_response=httpx.Response(502, text="<html>", request=REQUEST)),
            "UNKNOWN",
        ),
    ],
)
def test_transient_errors(error: exceptions.FirebaseError, code: str) -> None:
    assert outcome_of(error) == PushOutcome("retry", code)


def test_unknown_error_without_a_transport_cause_is_permanent() -> None:
    assert outcome_of(exceptions.UnknownError("?", cause=ValueError("v"))) == PushOutcome("failed", "UNKNOWN")
