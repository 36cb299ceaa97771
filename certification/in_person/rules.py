"""What may be asked for, appealed and decided in person: pure rules over plain data."""

from __future__ import annotations

from datetime import datetime, timedelta

REQUEST_KINDS = ("home_visit", "service_point")
OPEN_REQUEST = ("requested", "scheduled")
# How a person was certified in person: where an operator saw them, or an appeal the operator upheld.
METHODS = (*REQUEST_KINDS, "appeal")

APPEAL_SUBJECTS = ("payment", "check")
APPEAL_OUTCOMES = ("upheld", "rejected")
# The answer a person is promised: fifteen days, the time China's social-insurance offices give
# themselves to answer a written request.
APPEAL_ANSWER_DAYS = 15
NOTE_MAX, STATEMENT_MAX, PLACE_MAX = 500, 2000, 200
# A visit is arranged for the coming weeks; a time years away is a typing mistake (and one near the
# end of the calendar cannot even be told in China time).
SCHEDULE_HORIZON = timedelta(days=366)


def overdue(due_at: datetime, now: datetime) -> bool:
    return now > due_at


def appealable_payment(status: str, back_paid: bool) -> bool:
    """A month withheld and not yet paid back: the money the person is still owed or denied."""
    return status == "withheld" and not back_paid


def appealable_check(status: str) -> bool:
    """A face check that ended in a refusal; one waiting for a person is decided there first."""
    return status == "failed"


def schedule_refusal(scheduled_for: datetime, now: datetime) -> str | None:
    """Why a visit cannot be set for `scheduled_for` (a refusal code), or None."""
    if scheduled_for <= now:
        return "schedule_in_past"
    if scheduled_for > now + SCHEDULE_HORIZON:
        return "schedule_too_far"
    return None
