"""The audit page's filter: China's calendar days as instants, and the filters given, by name."""

from __future__ import annotations

from datetime import UTC, date, datetime

from review.lookup import AuditFilter


def test_days_are_china_days_both_included() -> None:
    shown = AuditFilter(first_day=date(2026, 5, 1), last_day=date(2026, 5, 3))
    assert shown.since == datetime(2026, 4, 30, 16, 0, tzinfo=UTC)  # 00:00 on 1 May in Beijing
    assert shown.until == datetime(2026, 5, 3, 16, 0, tzinfo=UTC)  # 00:00 on 4 May: the 3rd is shown whole


def test_a_day_at_the_year_end() -> None:
    assert AuditFilter(last_day=date(2026, 12, 31)).until == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)


def test_no_filter_is_everything() -> None:
    shown = AuditFilter()
    assert (shown.since, shown.until, shown.given) == (None, None, {})


def test_the_filters_given_by_their_names_in_the_query() -> None:
    shown = AuditFilter("system:worker", "", "person:1", date(2026, 5, 1), None)
    assert shown.given == {"actor": "system:worker", "subject": "person:1", "from": "2026-05-01"}
