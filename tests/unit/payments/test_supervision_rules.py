"""Fund supervision's pure rules: the face probe's window and closing an alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import BadRequest, Conflict
from payments.supervision import rules


def test_the_first_scan_probes_the_lookback_and_later_ones_what_is_new() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    t = rules.Thresholds()
    assert rules.face_window(None, now, t) == (now - timedelta(days=t.face_first_scan_days), now)
    last = now - timedelta(days=1)
    assert rules.face_window(last, now, t) == (last, now)


def test_an_alert_is_closed_once_with_words() -> None:
    assert rules.closing_reason(rules.OPEN, "  spouses, one joint account  ") == "spouses, one joint account"
    with pytest.raises(BadRequest, match="reason_required"):
        rules.closing_reason(rules.OPEN, " x ")
    with pytest.raises(Conflict, match="alert_closed"):
        rules.closing_reason(rules.CLOSED, "a good reason")


def test_a_couple_sharing_a_phone_is_not_a_finding_but_two_pensions_in_one_account_are() -> None:
    t = rules.Thresholds()
    assert (t.device_min_persons, t.account_min_persons) == (3, 2)
