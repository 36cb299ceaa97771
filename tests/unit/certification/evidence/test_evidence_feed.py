"""Parsing evidence-of-life feeds (CSV and JSON lines): events, per-line errors, the file's source,
and lines that repeat one event."""

from __future__ import annotations

import json
from datetime import date

from certification.evidence.feed import EvidenceReport, parse_feed
from core.records import RowError

ID_A = "11010519491231002X"
ID_B = "440304198001011239"
TODAY = date(2026, 3, 15)


def csv_text(*rows: str, header: str = "national_id,source,occurred_on,reference") -> str:
    return "\n".join([header, *rows]) + "\n"


def test_good_csv_lines() -> None:
    parsed = parse_feed(
        csv_text(f"{ID_A},hospital_visit,2026-03-01,V-1", f"{ID_B},bank_activity,2026-02-01,B-9"), "csv", None, TODAY
    )
    assert parsed.errors == []
    assert parsed.reports == [
        EvidenceReport(2, ID_A, "hospital_visit", date(2026, 3, 1), "V-1"),
        EvidenceReport(3, ID_B, "bank_activity", date(2026, 2, 1), "B-9"),
    ]


def test_the_file_source_is_for_lines_without_one() -> None:
    text = csv_text(f"{ID_A},,2026-03-01,V-1", f"{ID_B},police,2026-03-02,P-1")
    parsed = parse_feed(text, "csv", "pharmacy_purchase", TODAY)
    assert [r.source for r in parsed.reports] == ["pharmacy_purchase", "police"]
    no_source = parse_feed(
        csv_text(f"{ID_A},2026-03-01,X", header="national_id,occurred_on,reference"), "csv", None, TODAY
    )
    assert [(e.line, e.field) for e in no_source.errors] == [(2, "source")]


def test_every_bad_field_is_reported_with_its_line() -> None:
    text = (
        "".join(
            json.dumps(row) + "\n"
            for row in (
                {"national_id": ID_A, "source": "hospital_visit", "occurred_on": "2026-03-01", "reference": "ok"},
                {
                    "national_id": "110105194912310021",
                    "source": "qr_charge",
                    "occurred_on": "20260301",
                    "reference": "",
                },
                {"national_id": ID_B, "source": "bank_activity", "occurred_on": "2026-03-16", "reference": "x" * 201},
                {"national_id": ID_B, "source": "bank_activity", "occurred_on": "2026-02-30", "reference": "a\x00b"},
            )
        )
        + "not json\n"
    )
    parsed = parse_feed(text, "jsonl", None, TODAY)
    assert [r.line for r in parsed.reports] == [1]
    assert [(e.line, e.field) for e in parsed.errors] == [
        (2, "national_id"),
        (2, "source"),
        (2, "occurred_on"),
        (2, "reference"),
        (3, "occurred_on"),
        (3, "reference"),
        (4, "occurred_on"),
        (4, "reference"),
        (5, "-"),
    ]
    assert parsed.errors[3] == RowError(2, "reference", "is required (the feed's own id of the event)")


def test_a_repeated_line_is_one_event_and_another_day_for_it_is_refused() -> None:
    text = csv_text(
        f"{ID_A},hospital_visit,2026-03-01,V-1",
        f"{ID_A},hospital_visit,2026-03-01,V-1",
        f"{ID_A},hospital_visit,2026-03-02,V-1",
        f"{ID_A},pharmacy_purchase,2026-03-01,V-1",
    )
    parsed = parse_feed(text, "csv", None, TODAY)
    assert [r.line for r in parsed.reports] == [2, 5]
    assert parsed.repeated == 1
    assert parsed.errors == [RowError(4, "occurred_on", "differs from line 2 for the same reference")]


def test_a_csv_without_the_required_columns_is_refused_at_its_header() -> None:
    parsed = parse_feed("national_id,date\n", "csv", "police", TODAY)
    assert parsed.reports == []
    assert [(e.line, e.field) for e in parsed.errors] == [(1, "occurred_on"), (1, "reference")]
