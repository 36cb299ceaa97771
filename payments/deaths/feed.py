"""Parsing the civil-affairs death feed (CSV with the header national_id,date_of_death, or JSON
lines with the same keys): pure, no I/O.

Every bad line is reported with its line, field and reason. What needs the person's record (an
unknown national ID, a date before birth) is the service's to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from core import national_id as nid
from core.records import RowError, field_text, iso_date, read_rows

_CSV_REQUIRED = ("national_id", "date_of_death")


@dataclass(frozen=True)
class DeathReport:
    line: int
    national_id: str
    date_of_death: date


def parse_feed(text: str, fmt: str, today: date) -> tuple[list[DeathReport], list[RowError]]:
    """Validate a whole feed; return the reports to record (the last line per national ID: a later
    line corrects an earlier one, as a later feed would) and every line's errors."""
    rows, errors = read_rows(text, fmt, _CSV_REQUIRED)
    by_id: dict[str, DeathReport] = {}
    for line, raw in rows:
        national_id = nid.normalise(field_text(raw, "national_id"))
        id_reason = nid.validate(national_id) if national_id else "is required"
        if id_reason:
            errors.append(RowError(line, "national_id", id_reason))
        died = iso_date(field_text(raw, "date_of_death"))
        if died is None:
            errors.append(RowError(line, "date_of_death", "must be a date like 2026-03-07"))
        elif died > today:
            errors.append(RowError(line, "date_of_death", "is in the future"))
        elif not id_reason:
            by_id[national_id] = DeathReport(line, national_id, died)
    return sorted(by_id.values(), key=lambda r: r.line), sorted(errors, key=lambda e: e.line)
