"""Certification rules as pure functions: the challenge draw, eligibility dates, attempt limits
and how a worker's outcome becomes the check's status."""

from __future__ import annotations

import calendar
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from liveness import challenge
from liveness.model import Action

ELIGIBILITY_MONTHS = 12


def draw_challenge(allowed: Sequence[str], min_n: int, max_n: int, rng: random.Random) -> tuple[str, ...]:
    """A random ordered selection of distinct actions, by the face worker's policy (liveness.challenge)."""
    return tuple(str(action) for action in challenge.draw([Action(a) for a in allowed], min_n, max_n, rng))


def add_months(day: date, months: int) -> date:
    """Same day `months` later; the 29th-31st fall back to the month's last day (29 Feb -> 28 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def eligible_until(passed_on: date, current: date | None) -> date:
    """Twelve months from the pass; an earlier pass that reaches further is never shortened."""
    extended = add_months(passed_on, ELIGIBILITY_MONTHS)
    return max(extended, current) if current is not None else extended


@dataclass(frozen=True)
class Verdict:
    status: str
    reasons: tuple[str, ...]


def final_status(worker_outcome: str, reasons: Sequence[str], earlier_failures: int, limit: int) -> Verdict:
    """The check's status: the worker's outcome, except that the failure which reaches the limit of
    failures in the window goes to a person instead (an honest pensioner is never stopped by
    the machine alone)."""
    if worker_outcome == "failed" and earlier_failures + 1 >= limit:
        return Verdict("needs_review", (*reasons, "repeated_failures"))
    return Verdict(worker_outcome, tuple(reasons))


def attempts_left(failures: int, limit: int) -> int:
    return max(0, limit - failures)
