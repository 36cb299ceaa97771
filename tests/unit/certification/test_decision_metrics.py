"""Every reason a decision can give is counted under a category; labels come from bounded sets."""

from __future__ import annotations

from certification.metrics import OUTCOMES, REASON_CATEGORIES, decision_labels, reason_category
from liveness.model import Outcome, Reason
from review.service import DECISIONS


def test_every_reason_has_a_category() -> None:
    assert {str(r) for r in Reason} <= REASON_CATEGORIES.keys()
    reviewers = {reason for _, reason in DECISIONS.values() if reason}
    assert reviewers <= REASON_CATEGORIES.keys()
    assert reason_category("repeated_failures") == "review"
    assert reason_category("something new") == "other"


def test_every_status_a_decision_leaves_is_an_outcome() -> None:
    assert {str(o) for o in Outcome} | {status for status, _ in DECISIONS.values()} == OUTCOMES


def test_decision_labels() -> None:
    assert decision_labels("failed", ["too_dark", "no_motion"]) == ("failed", ["quality", "liveness"])
    assert decision_labels("passed", []) == ("passed", [])
    assert decision_labels("unheard_of", ["x"]) == ("other", ["other"])
