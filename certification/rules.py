"""Certification rules as pure functions: the challenge draw, eligibility dates, attempt limits,
how a worker's outcome becomes the check's status, and where biometric objects are kept."""

from __future__ import annotations

import calendar
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from liveness import challenge
from liveness.model import Action
from notifications.rules import LOCAL_TZ

ELIGIBILITY_MONTHS = 12


def draw_challenge(allowed: Sequence[str], min_n: int, max_n: int, rng: random.Random) -> tuple[str, ...]:
    """A random ordered selection of distinct actions, by the face worker's policy (liveness.challenge)."""
    return tuple(str(action) for action in challenge.draw([Action(a) for a in allowed], min_n, max_n, rng))


def add_months(day: date, months: int) -> date:
    """Same day `months` later; the 29th-31st fall back to the month's last day (29 Feb -> 28 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def day_in_china(at: datetime) -> date:
    """The calendar day a pass, a confirmation or a feed's event belongs to: China's, as the pensioner,
    the feeds and the QR charges count days (a pass at 06:00 in Beijing is 22:00 the day before in UTC)."""
    return at.astimezone(LOCAL_TZ).date()


def extended_until(passed_on: date) -> date:
    """How far a pass on `passed_on` (a face pass or a confirmation by data) reaches: twelve months."""
    return add_months(passed_on, ELIGIBILITY_MONTHS)


def eligible_until(passed_on: date, current: date | None) -> date:
    """Twelve months from the pass; an earlier pass that reaches further is never shortened.
    (repository.EXTEND_ELIGIBILITY is this rule as the database applies it.)"""
    extended = extended_until(passed_on)
    return max(extended, current) if current is not None else extended


@dataclass(frozen=True)
class Verdict:
    status: str
    reasons: tuple[str, ...]


def final_status(
    worker_outcome: str, reasons: Sequence[str], earlier_failures: int, limit: int, holds: Sequence[str] = ()
) -> Verdict:
    """The check's status: the worker's outcome, except that the failure which reaches the limit of
    failures in the window goes to a person instead (an honest pensioner is never stopped by
    the machine alone), and that a check held at submission (`holds`: a relative or device that helped
    too many elders) is decided by a person whatever the worker found, unless there is nothing to decide
    (a retry asks for a new video)."""
    if holds and worker_outcome in ("passed", "failed", "needs_review"):
        return Verdict("needs_review", (*reasons, *(h for h in holds if h not in reasons)))
    if worker_outcome == "failed" and earlier_failures + 1 >= limit:
        return Verdict("needs_review", (*reasons, "repeated_failures"))
    return Verdict(worker_outcome, tuple(reasons))


def attempts_left(failures: int, limit: int) -> int:
    return max(0, limit - failures)


# -- biometric objects ---------------------------------------------------------------------------
# Every selfie and review frame lies under one of these prefixes, in a folder named after a row
# written before anything is stored there: the challenge (uploads/<person>/<challenge>/, the one
# folder its presigned POST may write to) or the check (reviews/<person>/<check>/).
UPLOADS = "uploads/"
REVIEWS = "reviews/"
BIOMETRIC_PREFIXES = (UPLOADS, REVIEWS)

# How old an object no check names must be before the sweep deletes it. The longest a live object
# goes unnamed is an upload's: a direct upload is named within the request, a presigned one only
# until its challenge expires (120 s), after which no check can name it; review frames are named
# seconds after they are written (frames of a check still queued or processing are kept whatever
# their age: its worker writes them again). Six hours covers both, and clocks that disagree, many
# times over, while an orphan is gone within 6 h + the nightly run's 24 h of being written, long
# before a named object's retention (MEDIA_RETENTION_DAYS after the decision) ends.
ORPHAN_GRACE = timedelta(hours=6)


def upload_prefix(person_id: uuid.UUID, challenge_id: uuid.UUID) -> str:
    return f"{UPLOADS}{person_id}/{challenge_id}/"


def review_frame_key(person_id: uuid.UUID, check_id: uuid.UUID, n: int) -> str:
    return f"{REVIEWS}{person_id}/{check_id}/frame-{n:02d}.jpg"


def review_folder_check(key: str) -> uuid.UUID | None:
    """The check whose review frames folder holds `key` (review_frame_key), or None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != REVIEWS:
        return None
    try:
        return uuid.UUID(parts[2])
    except ValueError:
        return None


def folder_person(key: str) -> uuid.UUID | None:
    """The person whose folder holds `key` (uploads/<person>/... or reviews/<person>/...), or None."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" not in BIOMETRIC_PREFIXES:
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


def past_grace(last_modified: datetime, now: datetime) -> bool:
    """Whether an object written at `last_modified` may be swept, if no check names it."""
    return last_modified <= now - ORPHAN_GRACE
