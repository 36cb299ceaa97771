"""The console's words (`console.*` and `status.*` in the catalogue); an operator chooses the language,
kept with their account."""

from __future__ import annotations

from datetime import datetime

from certification.reasons import explain
from core.text import number, text


def label(key: str, locale: str, /, **params: object) -> str:
    return text(f"console.{key}", locale, **params)


def status_label(status: str, locale: str) -> str:
    """A stored state (a check's status, a run's state, a person's vital status). A table of their own,
    as some share their names with buttons and headings ("retry", "completed"); an unknown state is
    shown as stored."""
    return _known(f"status.{status}", locale, status)


def reason_label(code: str, locale: str) -> str:
    return explain(code, locale).text


def operator_reason(code: str, locale: str) -> str:
    """Why a check waits, worded for operators (the cardholder's wording is `reason_label`)."""
    return _known(f"review_reason.{code}", locale, code)


def score_label(name: str, locale: str) -> str:
    """A measurement of the face worker, named for operators; a new one shows as the worker names it."""
    return _known(f"score.{name}", locale, name)


def waited(since: datetime, now: datetime, locale: str) -> str:
    """How long something has waited, in the largest unit that keeps it short: 45 min, 5 h, 3 d."""
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return label("minutes_short", locale, count=minutes)
    if minutes < 48 * 60:
        return label("hours_short", locale, count=minutes // 60)
    return label("days_short", locale, count=minutes // (24 * 60))


def _known(key: str, locale: str, fallback: str) -> str:
    try:
        return text(key, locale)
    except KeyError:
        return fallback


def actor_label(actor: str, locale: str) -> str:
    """Who did something, as stored ("worker", "system:scheduler", an operator's name): the machines named in words."""
    if actor == "worker":
        return label("actor_worker", locale)
    if actor.startswith("system:"):
        return label("actor_system", locale)
    return actor


# How each measurement reads best: counts whole, seconds with their unit, shares as percentages.
_COUNTS = frozenset(
    {"frames_analysed", "keyframes", "faces_max", "multi_face_keyframes", "encodings", "replay_events", "attempts"}
)
_SHARES = frozenset({"face_share", "seen_share"})


def score_value(name: str, value: object, locale: str) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if name in _COUNTS or name in ("face_px", "faces"):
        return number(round(value), locale)
    if name in _SHARES:
        return f"{value:.0%}"
    if name.endswith("_s"):
        return f"{value:.1f} s"
    return f"{value:.3f}"
