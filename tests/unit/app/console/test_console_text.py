"""The console's words for stored states: each state its own, never a button's or a heading's."""

from __future__ import annotations

import pytest

from app.console.text import label, status_label
from core.text import keys
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
