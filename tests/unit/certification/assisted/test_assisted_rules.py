"""The assisted-certification rules: who may link, when consent may be given, and which checks a
person must decide."""

from __future__ import annotations

import pytest

from certification import rules as certification_rules
from certification.assisted import rules
from certification.reasons import CODES

LIMITS = rules.Limits(max_helpers=3, max_elders=2, review_elders=2, window_days=365)


def refusal(helper_open: int = 0, elder_active: int = 0, *, same: bool = False, alive: bool = True) -> str | None:
    return rules.link_refusal(helper_open, elder_active, LIMITS, same_person=same, elder_alive=alive)


def test_a_relative_may_ask_within_the_limits() -> None:
    assert refusal() is None
    assert refusal(helper_open=1, elder_active=2) is None


def test_nobody_links_themselves_and_a_death_record_wins() -> None:
    assert refusal(same=True) == "relative_self"
    assert refusal(alive=False) == "person_deceased"
    assert refusal(same=True, alive=False) == "relative_self"


def test_the_relatives_open_requests_count_against_their_elders() -> None:
    assert refusal(helper_open=2) == "relative_elders_limit"
    assert refusal(helper_open=5) == "relative_elders_limit"


def test_only_consented_helpers_count_against_the_elder() -> None:
    assert refusal(elder_active=3) == "relative_helpers_limit"


@pytest.mark.parametrize(
    ("state", "active", "expected"),
    [
        ("pending", 0, None),
        ("pending", 2, None),
        ("pending", 3, "relative_helpers_limit"),
        ("active", 3, None),  # consenting again to a link already counted
        ("ended", 0, "relative_link_closed"),
        ("superseded", 0, "relative_link_closed"),
    ],
)
def test_consent_refusal(state: str, active: int, expected: str | None) -> None:
    assert rules.consent_refusal(state, active, LIMITS) == expected


@pytest.mark.parametrize(
    ("by_helper", "by_device", "held"),
    [(1, 1, False), (2, 2, False), (3, 1, True), (1, 3, True), (3, 3, True)],
)
def test_a_relative_or_device_that_helped_too_many_elders_is_held(by_helper: int, by_device: int, held: bool) -> None:
    assert rules.holds(by_helper, by_device, LIMITS) == (("assisted_limit",) if held else ())


def test_the_hold_reason_is_worded_in_the_catalogue() -> None:
    assert rules.ASSISTED_LIMIT in CODES


@pytest.mark.parametrize("outcome", ["passed", "failed", "needs_review"])
def test_a_held_check_goes_to_a_person_whatever_the_worker_found(outcome: str) -> None:
    verdict = certification_rules.final_status(outcome, ["no_face"], 0, 3, ("assisted_limit",))
    assert verdict == certification_rules.Verdict("needs_review", ("no_face", "assisted_limit"))


def test_a_held_check_that_needs_a_new_video_asks_for_one() -> None:
    assert certification_rules.final_status("retry", ["too_dark"], 0, 3, ("assisted_limit",)).status == "retry"


def test_a_hold_is_not_repeated_and_no_hold_changes_nothing() -> None:
    held = certification_rules.final_status("needs_review", ["assisted_limit"], 0, 3, ("assisted_limit",))
    assert held.reasons == ("assisted_limit",)
    assert certification_rules.final_status("passed", [], 0, 3, ()).status == "passed"
