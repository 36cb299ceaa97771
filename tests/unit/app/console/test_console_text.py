"""The console's words for stored states: each state its own, never a button's or a heading's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.console.text import actor_label, label, operator_reason, score_label, score_value, status_label, waited
from certification.reasons import CODES
from core.text import keys
from liveness.model import Reason
from payments.disbursement.approval import STATES as RUN_STATES

# The values the CHECK constraints allow: certification_checks.status, disbursement_runs.state, persons.vital_status.
STORED = (
    *("queued", "processing", "passed", "failed", "needs_review", "retry", "home_visit"),
    *RUN_STATES,
    *("alive", "deceased"),
)


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_stored_state_has_words_of_its_own(locale: str) -> None:
    assert set(STORED) == {key.removeprefix("status.") for key in keys(locale) if key.startswith("status.")}
    words = {status_label(state, locale) for state in STORED}
    assert len(words) == len(STORED)
    labels = {label(key.removeprefix("console."), locale) for key in keys(locale) if key.startswith("console.")}
    assert not words & labels  # not the retry button, not "Completed"


def test_states_read_as_states() -> None:
    assert [status_label(s, "zh-CN") for s in ("completed", "home_visit", "retry")] == [
        "已完成",
        "待上门核实",
        "需重新录制",
    ]
    assert [status_label(s, "en") for s in ("completed", "home_visit", "retry")] == [
        "completed",
        "home visit ordered",
        "retry",
    ]
    assert status_label("unheard_of", "en") == "unheard_of"


def test_every_reason_a_check_can_wait_for_has_operator_words_in_both_languages() -> None:
    for locale in ("zh-CN", "en"):
        worded = {key.removeprefix("review_reason.") for key in keys(locale) if key.startswith("review_reason.")}
        assert worded == set(CODES) | {r.value for r in Reason}
    assert operator_reason("match_uncertain", "en") == "Match to the reference uncertain"
    assert operator_reason("some_new_code", "zh-CN") == "some_new_code"  # shown as the worker names it


def test_measurements_read_as_words_and_units() -> None:
    assert score_label("ear_baseline", "zh-CN") == "静止时睁眼程度"
    assert score_label("a_new_measure", "en") == "a_new_measure"
    assert [
        score_value(name, value, "en")
        for name, value in (
            ("encodings", 3.0),
            ("frames_analysed", 1234.0),
            ("seen_share", 0.875),
            ("duration_s", 4.96),
        )
    ] == ["3", "1,234", "88%", "5.0 s"]
    assert score_value("match_distance", 0.51234, "en") == "0.512"
    assert score_value("note", "text", "en") == "text"


def test_time_waiting_reads_in_the_largest_short_unit() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    waits = [now - timedelta(minutes=m) for m in (0, 59, 60, 47 * 60 + 59, 48 * 60, 10 * 24 * 60)]
    assert [waited(since, now, "en") for since in waits] == ["0 min", "59 min", "1 h", "47 h", "2 d", "10 d"]
    assert waited(now - timedelta(hours=3), now, "zh-CN") == "3 小时"
    assert waited(now + timedelta(minutes=5), now, "en") == "0 min"  # a clock a little ahead is not negative


def test_machines_are_named_in_words() -> None:
    assert [actor_label(a, "zh-CN") for a in ("worker", "system:scheduler", "Olga Operator")] == [
        "人脸分析程序",
        "系统",
        "Olga Operator",
    ]
