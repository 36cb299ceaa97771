"""The reason staff give for what they decide: kept in the audit log, so it must say something."""

from __future__ import annotations

from core.errors import BadRequest

REASON_MIN, REASON_MAX = 3, 1000  # characters of a reason, padding not counted


def stated(reason: str) -> str:
    """A reason as the audit log keeps it, or the refusal that says what is wrong with it."""
    reason = reason.strip()
    if len(reason) < REASON_MIN:  # the API's schemas and the console's forms let padding through
        raise BadRequest("reason_required")
    if len(reason) > REASON_MAX:  # the console's forms leave the length to this rule, to say it in words
        raise BadRequest("reason_too_long", most=REASON_MAX)
    return reason
