"""What sending and checking an SMS code refuses (auth.codes), for the routes of every purpose that
use one: sign-in and card recovery."""

from __future__ import annotations

from core.errors import BadRequest, TooManyRequests

SENDING_CODE = (
    TooManyRequests("otp_rate_limited", minutes=12),
    TooManyRequests("otp_client_rate_limited", minutes=12),
    TooManyRequests("otp_unavailable", minutes=12),
)
CHECKING_CODE = (BadRequest("otp_invalid", left=2), BadRequest("otp_expired"), BadRequest("otp_locked"))
