"""Parsing evidence-of-life feeds (CSV with the header national_id,source,occurred_on,reference, or
JSON lines with the same keys; the source may instead be given for the whole file): pure, no I/O.

Every bad line is reported with its line, field and reason. What needs the database (an unknown
national ID, a reference already recorded with another date) is the service's to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from core import national_id as nid
from core.records import RowError, field_text, iso_date, read_rows
from infra.config import EVIDENCE_FEEDS

_CSV_REQUIRED = ("national_id", "occurred_on", "reference")
REFERENCE_MAX = 200


@dataclass(frozen=True)
class EvidenceReport:
    """One event a feed reports: the person (by national ID) did something on a day."""

    line: int
    national_id: str
    source: str
    occurred_on: date
    reference: str


@dataclass(frozen=True)
class ParsedFeed:
    reports: list[EvidenceReport]
    errors: list[RowError]
    repeated: int  # lines that repeat an earlier line of the file: one event, landed once


def parse_feed(text: str, fmt: str, source: str | None, today: date) -> ParsedFeed:
    """Validate a whole feed. `source` is the file's source, for lines that name none. A line that
    repeats an earlier one (same source and reference) is the same event: counted, not landed twice,
    and refused when it gives the event another day."""
    rows, errors = read_rows(text, fmt, _CSV_REQUIRED)
    first: dict[tuple[str, str, str], EvidenceReport] = {}
    repeated = 0
    for line, raw in rows:
        report = _report(line, raw, source, today, errors)
        if report is None:
            continue
        key = (report.national_id, report.source, report.reference)
        earlier = first.get(key)
        if earlier is None:
            first[key] = report
        elif earlier.occurred_on == report.occurred_on:
            repeated += 1
        else:
            errors.append(RowError(line, "occurred_on", f"differs from line {earlier.line} for the same reference"))
    reports = sorted(first.values(), key=lambda r: r.line)
    return ParsedFeed(reports, sorted(errors, key=lambda e: e.line), repeated)


def _report(
    line: int, raw: dict[str, object], default_source: str | None, today: date, errors: list[RowError]
) -> EvidenceReport | None:
    before = len(errors)
    national_id = nid.normalise(field_text(raw, "national_id"))
    id_reason = nid.validate(national_id) if national_id else "is required"
    if id_reason:
        errors.append(RowError(line, "national_id", id_reason))
    source = field_text(raw, "source") or default_source
    if not source:
        errors.append(RowError(line, "source", "is required (a source column, or the source of the whole file)"))
    elif source not in EVIDENCE_FEEDS:
        errors.append(RowError(line, "source", f"must be one of {', '.join(EVIDENCE_FEEDS)}"))
    occurred = iso_date(field_text(raw, "occurred_on"))
    if occurred is None:
        errors.append(RowError(line, "occurred_on", "must be a date like 2026-03-07"))
    elif occurred > today:
        errors.append(RowError(line, "occurred_on", "is in the future"))
    reference = field_text(raw, "reference")
    if not reference:
        errors.append(RowError(line, "reference", "is required (the feed's own id of the event)"))
    elif "\x00" in reference:  # PostgreSQL text cannot hold it
        errors.append(RowError(line, "reference", "contains a NUL character"))
    elif len(reference) > REFERENCE_MAX:
        errors.append(RowError(line, "reference", f"is longer than {REFERENCE_MAX} characters"))
    if len(errors) > before:
        return None
    assert source is not None
    assert occurred is not None
    return EvidenceReport(line, national_id, source, occurred, reference)
