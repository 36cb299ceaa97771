"""What may be appealed and scheduled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certification.in_person import rules

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def test_only_a_month_still_withheld_can_be_appealed() -> None:
    assert rules.appealable_payment("withheld", back_paid=False)
    assert not rules.appealable_payment("withheld", back_paid=True)
    assert not rules.appealable_payment("paid", back_paid=False)


def test_only_a_refused_check_can_be_appealed() -> None:
    assert rules.appealable_check("failed")
    for status in ("passed", "retry", "needs_review", "home_visit", "queued", "processing"):
        assert not rules.appealable_check(status), status


def test_a_visit_is_scheduled_within_the_coming_year() -> None:
    later = NOW + timedelta(hours=1)
    assert rules.schedule_refusal(later, NOW) is None
    assert rules.schedule_refusal(NOW + timedelta(days=366), NOW) is None
    assert rules.schedule_refusal(NOW, NOW) == "schedule_in_past"
    assert rules.schedule_refusal(NOW - timedelta(minutes=1), NOW) == "schedule_in_past"
    assert rules.schedule_refusal(NOW + timedelta(days=367), NOW) == "schedule_too_far"
    assert rules.schedule_refusal(datetime(9999, 12, 31, 23, 59, tzinfo=UTC), NOW) == "schedule_too_far"


def test_an_answer_is_overdue_after_its_day() -> None:
    assert not rules.overdue(NOW, NOW)
    assert rules.overdue(NOW, NOW + timedelta(seconds=1))
