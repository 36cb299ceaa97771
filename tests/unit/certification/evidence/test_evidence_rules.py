"""The evidence-of-life rule as a pure function: which sources count, how recent, how many distinct
events from how many sources, the trail it names, and that a death record always wins."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from certification.evidence.rules import Evidence, EvidenceRule, confirm

ON = date(2026, 6, 30)
RULE = EvidenceRule(
    frozenset({"hospital_visit", "pharmacy_purchase", "bank_activity", "qr_charge"}),
    within_days=90,
    min_events=2,
    min_sources=2,
)


def ev(n: int, source: str, days_ago: int) -> Evidence:
    return Evidence(uuid.UUID(int=n), source, ON - timedelta(days=days_ago))


def test_two_recent_events_from_two_sources_confirm_with_both_as_the_trail() -> None:
    hospital, pharmacy = ev(1, "hospital_visit", 10), ev(2, "pharmacy_purchase", 40)
    assert confirm(RULE, [pharmacy, hospital], ON, died=False) == (hospital, pharmacy)


def test_a_death_record_always_wins() -> None:
    plenty = [ev(n, source, n) for n, source in enumerate(sorted(RULE.sources), start=1)]
    assert confirm(RULE, plenty, ON, died=False) != ()
    assert confirm(RULE, plenty, ON, died=True) == ()


def test_events_of_one_source_are_not_enough_when_two_sources_are_asked() -> None:
    visits = [ev(n, "hospital_visit", n) for n in range(1, 6)]
    assert confirm(RULE, visits, ON, died=False) == ()
    one_source = EvidenceRule(RULE.sources, 90, min_events=2, min_sources=1)
    assert confirm(one_source, visits, ON, died=False) == (visits[0], visits[1])


def test_a_source_the_rule_does_not_count_is_ignored() -> None:
    police, hospital = ev(1, "police", 1), ev(2, "hospital_visit", 1)
    assert confirm(RULE, [police, hospital], ON, died=False) == ()


@pytest.mark.parametrize(("days_ago", "counts"), [(0, True), (90, True), (91, False), (-1, False)])
def test_the_window_runs_within_days_back_to_the_day_itself(days_ago: int, counts: bool) -> None:
    hospital, edge = ev(1, "hospital_visit", 5), ev(2, "bank_activity", days_ago)
    assert bool(confirm(RULE, [hospital, edge], ON, died=False)) is counts


def test_two_rows_of_one_source_and_day_are_one_event() -> None:
    # Two feeds' copies of one visit are one event: still only one event, then, for min_events 2.
    first, copy = ev(2, "hospital_visit", 3), ev(1, "hospital_visit", 3)
    one_source = EvidenceRule(RULE.sources, 90, min_events=2, min_sources=1)
    assert confirm(one_source, [first, copy], ON, died=False) == ()
    # With a second event, the trail names one row of the visit: the smaller id, whatever the order.
    other = ev(3, "hospital_visit", 20)
    assert confirm(one_source, [first, copy, other], ON, died=False) == (copy, other)
    assert confirm(one_source, [other, copy, first], ON, died=False) == (copy, other)


def test_the_trail_is_the_fewest_rows_newest_first_covering_the_sources() -> None:
    rule = EvidenceRule(RULE.sources, 90, min_events=3, min_sources=2)
    rows = [
        ev(1, "bank_activity", 1),
        ev(2, "bank_activity", 2),
        ev(3, "bank_activity", 3),
        ev(4, "pharmacy_purchase", 60),
        ev(5, "hospital_visit", 80),
    ]
    # The newest of the two newest sources, then the newest of the rest.
    assert confirm(rule, rows, ON, died=False) == (rows[0], rows[1], rows[3])


def test_nothing_confirms_nobody() -> None:
    assert confirm(RULE, [], ON, died=False) == ()


def test_the_rule_survives_the_round_trip_through_a_pass() -> None:
    assert EvidenceRule.from_dict(RULE.as_dict()) == RULE
    assert RULE.since(ON) == date(2026, 4, 1)
