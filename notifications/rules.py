"""Delivery rules: quiet hours, retry backoff, and when reminders and warnings are due.

Pure functions over plain data; the outbox, the dispatchers and the reminder scan apply them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

from core.pension import pay_date

# Mainland China keeps one time zone; quiet hours are the pensioner's night there.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
QUIET_FROM = time(22)
QUIET_UNTIL = time(8)
# A payment notice is released on its pay date at this local time, when the money is there.
PAY_DAY_NOTICE_AT = time(9)

REMINDER_STAGES = (30, 7, 1)  # days before a certification runs out
WITHHOLD_WARNING_DAYS = 14  # a payment that will be withheld is announced this many days before its pay date
RETRY_CAP_S = 3600


def release_at(at: datetime, *, urgent: bool) -> datetime:
    """When a notice written at `at` may reach the phone: at once if urgent or outside quiet hours,
    otherwise at the end of the night (08:00 local)."""
    local = at.astimezone(LOCAL_TZ)
    if urgent or QUIET_UNTIL <= local.time() < QUIET_FROM:
        return at
    morning = local.date() if local.time() < QUIET_UNTIL else local.date() + timedelta(days=1)
    return datetime.combine(morning, QUIET_UNTIL, LOCAL_TZ).astimezone(UTC)


def pay_day_release(pay_on: date, now: datetime) -> datetime:
    """A payment notice is not shown before the money is due: the pay date's morning, or now if later."""
    return max(now, datetime.combine(pay_on, PAY_DAY_NOTICE_AT, LOCAL_TZ).astimezone(UTC))


def retry_delay(attempts: int, base_s: int, retry_after: float | None) -> timedelta:
    """Exponential backoff from `base_s`, doubled per attempt and capped at an hour; never sooner
    than the server's Retry-After."""
    backoff = min(base_s * 2 ** max(attempts - 1, 0), RETRY_CAP_S)
    return timedelta(seconds=max(backoff, retry_after or 0.0))


class ReminderWindow(msgspec.Struct, frozen=True):
    """Certifications running out between `first_due` and `last_due` (inclusive) are at `stage`."""

    stage: int
    first_due: date
    last_due: date


def reminder_windows(today: date) -> list[ReminderWindow]:
    """Each stage covers the days down to the next stage: a person due in 5 days who has not had the
    7-day reminder (a scan missed, a certification shortened) gets it now, not never."""
    lower = [*REMINDER_STAGES[1:], -1]
    return [
        ReminderWindow(stage, today + timedelta(days=below + 1), today + timedelta(days=stage))
        for stage, below in zip(REMINDER_STAGES, lower, strict=True)
    ]


def warning_period(today: date, pay_day: int) -> date | None:
    """The month whose pay date is 1 to 14 days away, if any: its withheld payments get a warning now."""
    period = today.replace(day=1)
    if pay_date(period, pay_day) <= today:
        period = (period + timedelta(days=32)).replace(day=1)
    days_left = (pay_date(period, pay_day) - today).days
    return period if days_left <= WITHHOLD_WARNING_DAYS else None
