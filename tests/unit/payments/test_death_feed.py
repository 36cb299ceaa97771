"""Parsing the civil-affairs death feed (CSV and JSON lines): reports, line errors and their lines."""

from __future__ import annotations

import json
from datetime import date

import pytest

from core.records import RowError
from payments.deaths.feed import DeathReport, parse_feed

ID_A = "11010519491231002X"
ID_B = "440304198001011239"
TODAY = date(2026, 3, 15)


def csv_text(*rows: str, header: str = "national_id,date_of_death") -> str:
    return "\n".join([header, *rows]) + "\n"


def jsonl_text(*rows: dict[str, object] | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def test_good_csv_lines() -> None:
    reports, errors = parse_feed(csv_text(f"{ID_A},2026-01-31", f"{ID_B},2025-12-01"), "csv", TODAY)
    assert errors == []
    assert reports == [DeathReport(2, ID_A, date(2026, 1, 31)), DeathReport(3, ID_B, date(2025, 12, 1))]


def test_good_json_lines_with_blank_lines_and_a_lower_case_x() -> None:
    text = jsonl_text({"national_id": f" {ID_A.lower()} ", "date_of_death": "2026-01-31"}, "", "  ")
    reports, errors = parse_feed(text, "jsonl", TODAY)
    assert errors == []
    assert reports == [DeathReport(1, ID_A, date(2026, 1, 31))]


def test_csv_columns_in_another_order_with_extra_columns() -> None:
    text = csv_text(f"2026-01-31,X-1,{ID_A}", header="date_of_death,certificate,national_id")
    reports, errors = parse_feed(text, "csv", TODAY)
    assert errors == []
    assert reports == [DeathReport(2, ID_A, date(2026, 1, 31))]


def test_today_is_not_the_future() -> None:
    reports, errors = parse_feed(csv_text(f"{ID_A},{TODAY.isoformat()}"), "csv", TODAY)
    assert errors == []
    assert reports[0].date_of_death == TODAY


@pytest.mark.parametrize(
    ("national_id", "reason"),
    [
        (ID_A[:-1] + "3", "check digit does not match (GB 11643)"),
        ("", "is required"),
        ("1101051949123100", "must be 18 characters"),
        ("11010519491331002X", "contains an impossible birth date"),
        ("1101051949123100Y2", "must be 17 digits followed by a digit or X"),
    ],
    ids=["check-digit", "missing", "short", "impossible-birth-date", "letters"],
)
def test_bad_national_ids(national_id: str, reason: str) -> None:
    reports, errors = parse_feed(csv_text(f"{national_id},2026-01-31", f"{ID_B},2026-01-31"), "csv", TODAY)
    assert errors == [RowError(2, "national_id", reason)]
    assert [r.line for r in reports] == [3]  # the good line still lands


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-02-30", "must be a date like 2026-03-07"),
        ("31/01/2026", "must be a date like 2026-03-07"),
        ("20260131", "must be a date like 2026-03-07"),
        ("", "must be a date like 2026-03-07"),
        ("2026-03-16", "is in the future"),
        ("2099-01-01", "is in the future"),
    ],
    ids=["impossible", "other-format", "basic-format", "missing", "tomorrow", "far-future"],
)
def test_bad_dates(value: str, reason: str) -> None:
    reports, errors = parse_feed(jsonl_text({"national_id": ID_A, "date_of_death": value}), "jsonl", TODAY)
    assert reports == []
    assert errors == [RowError(1, "date_of_death", reason)]


def test_every_error_of_a_line_is_reported() -> None:
    _, errors = parse_feed(csv_text(f"{ID_A[:-1]}3,tomorrow"), "csv", TODAY)
    assert {(e.line, e.field) for e in errors} == {(2, "national_id"), (2, "date_of_death")}


def test_unreadable_lines() -> None:
    text = jsonl_text(
        "{not json",
        "[1, 2]",
        {"national_id": ID_A, "date_of_death": 20260131},
        {"national_id": ID_B, "date_of_death": "2026-01-31"},
    )
    reports, errors = parse_feed(text, "jsonl", TODAY)
    assert [(e.line, e.field) for e in errors] == [(1, "-"), (2, "-"), (3, "date_of_death")]
    assert reports == [DeathReport(4, ID_B, date(2026, 1, 31))]


def test_csv_header_must_name_both_columns() -> None:
    reports, errors = parse_feed(csv_text(f"{ID_A}", header="national_id"), "csv", TODAY)
    assert reports == []
    assert errors == [RowError(1, "date_of_death", "column is missing from the header")]


def test_csv_line_with_more_columns_than_the_header() -> None:
    reports, errors = parse_feed(csv_text(f"{ID_A},2026-01-31,surplus", f"{ID_B},2026-01-31"), "csv", TODAY)
    assert errors == [RowError(2, "-", "has more columns than the header")]
    assert [r.national_id for r in reports] == [ID_B]


def test_a_later_line_for_the_same_person_corrects_an_earlier_one() -> None:
    text = csv_text(f"{ID_A},2026-01-31", f"{ID_B},2026-01-01", f"{ID_A.lower()},2026-02-01")
    reports, errors = parse_feed(text, "csv", TODAY)
    assert errors == []
    assert reports == [DeathReport(3, ID_B, date(2026, 1, 1)), DeathReport(4, ID_A, date(2026, 2, 1))]
