"""The console's words (`console.*` and `status.*` in the catalogue); an operator chooses the language,
kept with their account."""

from __future__ import annotations

from certification.reasons import explain
from core.text import text


def label(key: str, locale: str, /, **params: object) -> str:
    return text(f"console.{key}", locale, **params)


def status_label(status: str, locale: str) -> str:
    """A stored state (a check's status, a run's state, a person's vital status). A table of their own,
    as some share their names with buttons and headings ("retry", "completed"); an unknown state is
    shown as stored."""
    try:
        return text(f"status.{status}", locale)
    except KeyError:
        return status


def reason_label(code: str, locale: str) -> str:
    return explain(code, locale).text
