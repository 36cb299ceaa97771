"""Fund supervision: what counts as a finding, and how an alert is closed. Pure, no I/O.

The thresholds are a supervisor's choices, named here so that docs/supervision.md and the scan say
the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import Conflict
from core.justification import stated

SHARED_ACCOUNT = "shared_account"
SHARED_FACE = "shared_face"
SHARED_DEVICE = "shared_device"
AFTER_DEATH = "after_death"
NO_LIFE_EVIDENCE = "no_life_evidence"
KINDS = (SHARED_ACCOUNT, SHARED_FACE, SHARED_DEVICE, AFTER_DEATH, NO_LIFE_EVIDENCE)
OPEN, CLOSED = "open", "closed"
STATES = (OPEN, CLOSED)


@dataclass(frozen=True)
class Thresholds:
    # Bank accounts are real-name in China: two pensions into one account is already worth a look.
    account_min_persons: int = 2
    # A couple sharing one phone to certify is ordinary; a third person is not.
    device_min_persons: int = 3
    device_window_days: int = 365
    # Paid while the latest evidence of life is older than this (the certification cycle).
    evidence_max_age_months: int = 12
    # How far back the first scan probes passed checks for other persons' faces; later scans probe
    # the checks decided since the previous one.
    face_first_scan_days: int = 400
    face_distance: float = 0.35


def face_window(previous_through: datetime | None, now: datetime, thresholds: Thresholds) -> tuple[datetime, datetime]:
    """The decision times of the passed checks this scan probes: after the previous scan's, up to now."""
    start = previous_through or now - timedelta(days=thresholds.face_first_scan_days)
    return start, now


def closing_reason(state: str, reason: str) -> str:
    """The reason an alert is closed with, or the refusal: an alert is closed once, with words."""
    if state == CLOSED:
        raise Conflict("alert_closed")
    return stated(reason)
