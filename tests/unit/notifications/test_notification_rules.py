"""Delivery rules: quiet hours, the pay-day release, retry backoff, reminder windows and the warning period."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from notifications.rules import (
    LOCAL_TZ,
    RETRY_CAP_S,
    pay_day_release,
    release_at,
    reminder_windows,
    retry_delay,
    warning_period,
)


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL_TZ)


# -- release_at ------------------------------------------------------------------------------------
def test_an_urgent_notice_goes_at_once_even_at_night() -> None:
    for at in (local(2026, 11, 22, 23, 30), local(2026, 11, 23, 3), local(2026, 11, 23, 12)):
        assert release_at(at, urgent=True) is at


@pytest.mark.parametrize(
    ("written", "released"),
    [
        (local(2026, 11, 22, 23, 30), local(2026, 11, 23, 8)),  # late evening: the next morning
        (local(2026, 11, 23, 3), local(2026, 11, 23, 8)),  # small hours: the same morning
        (local(2026, 11, 22, 22), local(2026, 11, 23, 8)),  # quiet hours start at 22:00 sharp
        (local(2026, 11, 23, 7, 59), local(2026, 11, 23, 8)),
        (local(2026, 11, 23, 0), local(2026, 11, 23, 8)),  # midnight belongs to the new day
        (local(2026, 12, 31, 23), local(2027, 1, 1, 8)),  # over the year's end
        (local(2027, 2, 28, 22, 30), local(2027, 3, 1, 8)),  # over a month's end
    ],
)
def test_a_routine_notice_written_in_quiet_hours_waits_for_08_00_local(written: datetime, released: datetime) -> None:
    got = release_at(written, urgent=False)
    assert got == released
    assert got.utcoffset() == timedelta(0)  # handed back in UTC, for timestamptz columns
    assert got.astimezone(LOCAL_TZ).hour == 8


def test_a_routine_notice_in_the_day_goes_at_once() -> None:
    for at in (local(2026, 11, 23, 8), local(2026, 11, 23, 12, 30), local(2026, 11, 23, 21, 59)):
        assert release_at(at, urgent=False) is at


def test_quiet_hours_are_judged_in_china_for_utc_inputs() -> None:
    # 15:30 UTC is 23:30 in Shanghai: the release is 08:00 there, midnight UTC.
    assert release_at(datetime(2026, 11, 22, 15, 30, tzinfo=UTC), urgent=False) == datetime(
        2026, 11, 23, 0, 0, tzinfo=UTC
    )
    # 19:00 UTC is 03:00 the next day in Shanghai: released the same local morning.
    assert release_at(datetime(2026, 11, 22, 19, 0, tzinfo=UTC), urgent=False) == datetime(
        2026, 11, 23, 0, 0, tzinfo=UTC
    )
    # 00:00 UTC is 08:00 and 13:59 UTC is 21:59 in Shanghai: day time, at once, although UTC's clock
    # says night and afternoon.
    for at in (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), datetime(2026, 11, 23, 13, 59, tzinfo=UTC)):
        assert release_at(at, urgent=False) == at
    # 14:00 UTC is 22:00 in Shanghai.
    assert release_at(datetime(2026, 11, 23, 14, 0, tzinfo=UTC), urgent=False) == datetime(
        2026, 11, 24, 0, 0, tzinfo=UTC
    )


# -- pay_day_release -------------------------------------------------------------------------------
def test_a_payment_notice_is_released_on_the_pay_date_at_09_00_local() -> None:
    pay_on = date(2026, 12, 15)
    nine = datetime(2026, 12, 15, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert pay_day_release(pay_on, datetime(2026, 11, 22, 18, 0, tzinfo=UTC)) == nine
    assert pay_day_release(pay_on, datetime(2026, 12, 15, 0, 59, tzinfo=UTC)) == nine  # 08:59 local, same day
    later = datetime(2026, 12, 15, 1, 0, 1, tzinfo=UTC)
    assert pay_day_release(pay_on, later) == later  # past it: now
    long_after = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    assert pay_day_release(pay_on, long_after) == long_after
    assert pay_day_release(pay_on, datetime(2026, 1, 1, tzinfo=UTC)).astimezone(LOCAL_TZ) == local(2026, 12, 15, 9)


# -- retry_delay -----------------------------------------------------------------------------------
def test_retries_back_off_doubling_from_the_base() -> None:
    assert [retry_delay(n, 30, None) for n in range(1, 6)] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]
    assert retry_delay(0, 30, None) == timedelta(seconds=30)  # no attempt counted yet: the base


def test_backoff_is_capped_at_an_hour() -> None:
    assert RETRY_CAP_S == 3600
    assert retry_delay(7, 30, None) == timedelta(seconds=1920)
    assert retry_delay(8, 30, None) == timedelta(seconds=3600)  # 3840 capped
    assert retry_delay(50, 30, None) == timedelta(seconds=3600)
    assert retry_delay(1, 5000, None) == timedelta(seconds=3600)  # even the base is capped


def test_a_larger_retry_after_wins_over_the_backoff_and_a_smaller_one_does_not() -> None:
    assert retry_delay(2, 30, 500.0) == timedelta(seconds=500)
    assert retry_delay(4, 30, 10.0) == timedelta(seconds=240)
    assert retry_delay(20, 30, 7200.0) == timedelta(seconds=7200)  # the server's word beyond the cap
    assert retry_delay(1, 30, 30.5) == timedelta(seconds=30.5)
    assert retry_delay(1, 30, 0.0) == timedelta(seconds=30)


def test_a_zero_base_retries_at_once_unless_told_to_wait() -> None:
    assert retry_delay(1, 0, None) == timedelta(0)
    assert retry_delay(10, 0, None) == timedelta(0)
    assert retry_delay(3, 0, 5.0) == timedelta(seconds=5)


# -- reminder_windows ------------------------------------------------------------------------------
def test_reminder_windows_are_contiguous_and_cover_0_to_30_days_once() -> None:
    today = date(2026, 11, 23)
    windows = reminder_windows(today)
    assert [w.stage for w in windows] == [30, 7, 1]
    ordered = sorted(windows, key=lambda w: w.first_due)
    assert ordered[0].first_due == today
    assert ordered[-1].last_due == today + timedelta(days=30)
    for earlier, later in itertools.pairwise(ordered):
        assert later.first_due == earlier.last_due + timedelta(days=1)  # no gap, no overlap
    for w in windows:
        assert w.first_due <= w.last_due
        assert w.last_due == today + timedelta(days=w.stage)  # a stage starts on its own day

    def stages(days_left: int) -> list[int]:
        due = today + timedelta(days=days_left)
        return [w.stage for w in windows if w.first_due <= due <= w.last_due]

    expected = {**dict.fromkeys(range(8, 31), 30), **dict.fromkeys(range(2, 8), 7), 0: 1, 1: 1}
    for days_left in range(31):
        assert stages(days_left) == [expected[days_left]], days_left
    for outside in (-1, 31, 45):
        assert stages(outside) == []


def test_reminder_windows_cross_month_and_year_ends() -> None:
    windows = reminder_windows(date(2026, 12, 20))
    assert [(w.first_due, w.last_due) for w in windows] == [
        (date(2026, 12, 28), date(2027, 1, 19)),
        (date(2026, 12, 22), date(2026, 12, 27)),
        (date(2026, 12, 20), date(2026, 12, 21)),
    ]


# -- warning_period --------------------------------------------------------------------------------
def test_a_warning_starts_14_days_before_the_pay_date() -> None:
    assert warning_period(date(2026, 12, 1), 15) == date(2026, 12, 1)  # 14 days left
    assert warning_period(date(2026, 12, 5), 15) == date(2026, 12, 1)
    assert warning_period(date(2026, 12, 14), 15) == date(2026, 12, 1)  # the day before
    assert warning_period(date(2026, 11, 30), 15) is None  # 15 days left
    assert warning_period(date(2026, 11, 25), 15) is None  # 20 days left


def test_on_and_after_the_pay_date_it_is_next_months_period() -> None:
    # On the pay date the month is paid (or withheld) already; next month's is 31 days away.
    assert warning_period(date(2026, 12, 15), 15) is None
    assert warning_period(date(2026, 11, 16), 15) is None
    # With an early pay day, next month's pay date comes within 14 days of this month's.
    assert warning_period(date(2026, 11, 25), 5) == date(2026, 12, 1)  # 10 days to 5 December
    assert warning_period(date(2026, 11, 21), 5) == date(2026, 12, 1)  # 14 days
    assert warning_period(date(2026, 11, 20), 5) is None  # 15 days
    assert warning_period(date(2026, 11, 5), 5) is None  # the pay date itself: next is 30 days away


def test_the_warning_period_rolls_over_from_december_to_january() -> None:
    assert warning_period(date(2026, 12, 25), 5) == date(2027, 1, 1)
    assert warning_period(date(2026, 12, 31), 14) == date(2027, 1, 1)  # 14 January: 14 days away
    assert warning_period(date(2026, 12, 31), 15) is None  # 15 January: 15 days away
    assert warning_period(date(2027, 1, 1), 15) == date(2027, 1, 1)
