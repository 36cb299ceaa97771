"""Parsing person import files (CSV and JSON lines): records, row errors and their line numbers."""

from __future__ import annotations

import io
import json
from datetime import date
from typing import Any

import pytest

from core.national_id import check_character
from core.records import (
    Pension,
    PersonRecord,
    RowError,
    national_id_key,
    parse_import,
    person_ids,
    read_rows,
)

ID_A = "11010519491231002X"  # born 1949-12-31
ID_B = "440304198001011239"  # born 1980-01-01
ID_C = "310115199512314569"  # born 1995-12-31

HEADER = "national_id,name,birth_date,phone,region,locale,reference_photo,pension_monthly_amount,pension_bank_account,pension_start_month"


def csv_row(**overrides: str) -> str:
    row = {
        "national_id": ID_A,
        "name": "张三",
        "birth_date": "1949-12-31",
        "phone": "13800138000",
        "region": "110105",
        "locale": "zh-CN",
        "reference_photo": "",
        "pension_monthly_amount": "350000",
        "pension_bank_account": "6222020200001234567",
        "pension_start_month": "2026-01",
    }
    row.update(overrides)
    return ",".join(row[c] for c in HEADER.split(","))


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def json_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "national_id": ID_A,
        "name": "张三",
        "birth_date": "1949-12-31",
        "phone": "13800138000",
        "region": "110105",
        "locale": "zh-CN",
        "pension": {"monthly_amount": 350000, "bank_account": "6222020200001234567", "start_month": "2026-01"},
    }
    row.update(overrides)
    return row


def jsonl_text(*rows: dict[str, Any] | str) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def pension_row(**pension: Any) -> dict[str, Any]:
    base = {"monthly_amount": 350000, "bank_account": "6222020200001234567", "start_month": "2026-01"}
    base.update(pension)
    return json_row(pension=base)


def fields(errors: list[RowError]) -> set[str]:
    return {e.field for e in errors}


# --- good rows ------------------------------------------------------------------------------------


def test_csv_good_row() -> None:
    records, errors = parse_import(csv_text(csv_row()), "csv")
    assert errors == []
    assert records == [
        PersonRecord(
            line=2,
            national_id=ID_A,
            name="张三",
            birth_date=date(1949, 12, 31),
            phone="13800138000",
            region="110105",
            locale="zh-CN",
            reference_photo=None,
            pension=Pension(350000, "6222020200001234567", date(2026, 1, 1)),
        )
    ]


def test_jsonl_good_row() -> None:
    records, errors = parse_import(jsonl_text(json_row(reference_photo="faces/a.jpg", locale="en")), "jsonl")
    assert errors == []
    assert records == [
        PersonRecord(
            line=1,
            national_id=ID_A,
            name="张三",
            birth_date=date(1949, 12, 31),
            phone="13800138000",
            region="110105",
            locale="en",
            reference_photo="faces/a.jpg",
            pension=Pension(350000, "6222020200001234567", date(2026, 1, 1)),
        )
    ]


def test_csv_without_pension_columns() -> None:
    header = "national_id,name,birth_date,phone,region"
    text = csv_text(f"{ID_B},李四,1980-01-01,13912345678,440304", header=header)
    records, errors = parse_import(text, "csv")
    assert errors == []
    assert len(records) == 1
    assert records[0].pension is None
    assert records[0].locale == "zh-CN"  # the default
    assert records[0].reference_photo is None


def test_csv_empty_pension_columns_mean_no_pension() -> None:
    row = csv_row(pension_monthly_amount="", pension_bank_account="", pension_start_month="")
    records, errors = parse_import(csv_text(row), "csv")
    assert errors == []
    assert records[0].pension is None


@pytest.mark.parametrize("pension", [None, {}, {"monthly_amount": None, "bank_account": "", "start_month": ""}])
def test_jsonl_absent_or_empty_pension(pension: Any) -> None:
    records, errors = parse_import(jsonl_text(json_row(pension=pension)), "jsonl")
    assert errors == []
    assert records[0].pension is None


def test_national_id_is_normalised() -> None:
    records, errors = parse_import(jsonl_text(json_row(national_id=" 11010519491231002x ")), "jsonl")
    assert errors == []
    assert records[0].national_id == ID_A


def test_bank_account_spaces_are_removed() -> None:
    records, errors = parse_import(jsonl_text(pension_row(bank_account="6222 0202 0000 1234 567")), "jsonl")
    assert errors == []
    assert records[0].pension is not None
    assert records[0].pension.bank_account == "6222020200001234567"


def test_jsonl_amount_as_numeric_string_is_accepted() -> None:
    records, errors = parse_import(jsonl_text(pension_row(monthly_amount="120000")), "jsonl")
    assert errors == []
    assert records[0].pension is not None
    assert records[0].pension.monthly_amount_fen == 120000


def test_jsonl_blank_lines_are_skipped_but_counted() -> None:
    text = "\n" + json.dumps(json_row()) + "\n\n" + json.dumps(json_row(national_id="bad")) + "\n"
    records, errors = parse_import(text, "jsonl")
    assert [r.line for r in records] == [2]
    assert errors == [RowError(4, "national_id", "must be 18 characters")]


# --- bad fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"national_id": ""}, "national_id"),
        ({"national_id": "11010519491231002"}, "national_id"),
        ({"national_id": "110105194912310021"}, "national_id"),  # wrong check digit
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"birth_date": ""}, "birth_date"),
        ({"birth_date": "31/12/1949"}, "birth_date"),
        ({"birth_date": "1949-12-30"}, "birth_date"),  # inconsistent with the ID
        ({"phone": ""}, "phone"),
        ({"phone": "1380013800"}, "phone"),  # 10 digits
        ({"phone": "138001380001"}, "phone"),  # 12 digits
        ({"phone": "23800138000"}, "phone"),
        ({"phone": "1380013800a"}, "phone"),
        ({"region": "11010"}, "region"),
        ({"region": "1101051"}, "region"),
        ({"region": "01010a"}, "region"),
        ({"region": ""}, "region"),
        ({"locale": "fr"}, "locale"),
        ({"locale": "zh"}, "locale"),
        ({"pension_monthly_amount": "3500.5"}, "pension.monthly_amount"),
        ({"pension_monthly_amount": "-100"}, "pension.monthly_amount"),
        ({"pension_monthly_amount": "0"}, "pension.monthly_amount"),
        ({"pension_monthly_amount": "abc"}, "pension.monthly_amount"),
        ({"pension_monthly_amount": "1000000001"}, "pension.monthly_amount"),
        ({"pension_bank_account": "12345678901"}, "pension.bank_account"),  # 11 digits
        ({"pension_bank_account": "1" * 31}, "pension.bank_account"),
        ({"pension_bank_account": "6222-0202-0000-1234"}, "pension.bank_account"),
        ({"pension_start_month": "2026-13"}, "pension.start_month"),
        ({"pension_start_month": "2026-00"}, "pension.start_month"),
        ({"pension_start_month": "2026-1"}, "pension.start_month"),
        ({"pension_start_month": "202601"}, "pension.start_month"),
    ],
)
def test_csv_bad_field(overrides: dict[str, str], field: str) -> None:
    records, errors = parse_import(csv_text(csv_row(**overrides)), "csv")
    assert records == []
    assert len(errors) == 1, errors
    assert errors[0].line == 2
    assert errors[0].field == field
    assert errors[0].reason


def test_birth_date_inconsistent_with_id_reason() -> None:
    _, errors = parse_import(jsonl_text(json_row(birth_date="1950-03-07")), "jsonl")
    assert errors == [RowError(1, "birth_date", "does not match the birth date inside the national ID")]


def test_birth_date_in_the_future() -> None:
    first17 = "110105" + "20991231" + "002"
    national_id = first17 + check_character(first17)
    _, errors = parse_import(jsonl_text(json_row(national_id=national_id, birth_date="2099-12-31")), "jsonl")
    assert errors == [RowError(1, "birth_date", "is in the future")]


@pytest.mark.parametrize(
    ("pension", "field"),
    [
        ({"monthly_amount": 3500.0}, "pension.monthly_amount"),
        ({"monthly_amount": 3500.5}, "pension.monthly_amount"),
        ({"monthly_amount": -100}, "pension.monthly_amount"),
        ({"monthly_amount": 0}, "pension.monthly_amount"),
        ({"monthly_amount": True}, "pension.monthly_amount"),
        ({"monthly_amount": None}, "pension.monthly_amount"),
        ({"monthly_amount": 1_000_000_001}, "pension.monthly_amount"),
        ({"bank_account": "12345"}, "pension.bank_account"),
        ({"start_month": "2026-13"}, "pension.start_month"),
    ],
)
def test_jsonl_bad_pension_field(pension: dict[str, Any], field: str) -> None:
    records, errors = parse_import(jsonl_text(pension_row(**pension)), "jsonl")
    assert records == []
    assert [(e.line, e.field) for e in errors] == [(1, field)]


def test_amount_at_the_maximum_is_accepted() -> None:
    records, errors = parse_import(jsonl_text(pension_row(monthly_amount=1_000_000_000)), "jsonl")
    assert errors == []
    assert records[0].pension is not None
    assert records[0].pension.monthly_amount_fen == 1_000_000_000


@pytest.mark.parametrize("pension", ["yes", 350000, ["350000"]])
def test_jsonl_pension_not_an_object(pension: Any) -> None:
    records, errors = parse_import(jsonl_text(json_row(pension=pension)), "jsonl")
    assert records == []
    assert [(e.line, e.field) for e in errors] == [(1, "pension")]


def test_partial_pension_reports_each_missing_part() -> None:
    row = csv_row(pension_bank_account="", pension_start_month="")
    _, errors = parse_import(csv_text(row), "csv")
    assert fields(errors) == {"pension.bank_account", "pension.start_month"}


def test_every_bad_field_of_a_row_is_reported() -> None:
    row = json_row(
        national_id="110105194912310021",
        name="",
        birth_date="yesterday",
        phone="123",
        region="1",
        locale="de",
        pension={"monthly_amount": 1.5, "bank_account": "1", "start_month": "2026-13"},
    )
    records, errors = parse_import(jsonl_text(row), "jsonl")
    assert records == []
    assert all(e.line == 1 for e in errors)
    assert fields(errors) == {
        "national_id",
        "name",
        "birth_date",
        "phone",
        "region",
        "locale",
        "pension.monthly_amount",
        "pension.bank_account",
        "pension.start_month",
    }


# --- line structure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["{not json", "[1, 2, 3]", '"a string"', "42", "null"])
def test_jsonl_line_not_a_json_object(line: str) -> None:
    records, errors = parse_import(
        jsonl_text(json_row(), line, json_row(national_id=ID_B, birth_date="1980-01-01")), "jsonl"
    )
    assert [r.line for r in records] == [1, 3]
    assert len(errors) == 1
    assert errors[0].line == 2
    assert errors[0].field == "-"


def test_jsonl_invalid_json_reason() -> None:
    _, errors = parse_import("{oops\n", "jsonl")
    assert errors[0].reason.startswith("is not valid JSON")
    _, errors = parse_import("[1]\n", "jsonl")
    assert errors[0].reason == "must be a JSON object"


@pytest.mark.parametrize("missing", ["national_id", "name", "birth_date", "phone", "region"])
def test_csv_missing_required_column(missing: str) -> None:
    header = ",".join(c for c in HEADER.split(",") if c != missing)
    row = ",".join(v for c, v in zip(HEADER.split(","), csv_row().split(","), strict=True) if c != missing)
    records, errors = parse_import(csv_text(row, header=header), "csv")
    assert records == []
    assert errors == [RowError(1, missing, "column is missing from the header")]


def test_csv_several_missing_columns_all_reported() -> None:
    records, errors = parse_import(csv_text("x,y", header="national_id,name"), "csv")
    assert records == []
    assert {(e.line, e.field) for e in errors} == {(1, "birth_date"), (1, "phone"), (1, "region")}


def test_csv_empty_file() -> None:
    records, errors = parse_import("", "csv")
    assert records == []
    assert len(errors) == 5
    assert all(e.line == 1 for e in errors)


def test_csv_header_whitespace_is_tolerated() -> None:
    header = " national_id , name , birth_date , phone , region "
    records, errors = parse_import(csv_text(f"{ID_B},李四,1980-01-01,13912345678,440304", header=header), "csv")
    assert errors == []
    assert [r.national_id for r in records] == [ID_B]


def test_csv_row_with_more_columns_than_header() -> None:
    good_b = csv_row(national_id=ID_B, birth_date="1980-01-01")
    text = csv_text(csv_row(), csv_row() + ",surplus", good_b)
    records, errors = parse_import(text, "csv")
    assert errors == [RowError(3, "-", "has more columns than the header")]
    assert [(r.line, r.national_id) for r in records] == [(2, ID_A), (4, ID_B)]


def test_csv_row_with_fewer_columns_reports_missing_fields() -> None:
    text = csv_text(f"{ID_A},张三,1949-12-31")
    records, errors = parse_import(text, "csv")
    assert records == []
    assert {(e.line, e.field) for e in errors} == {(2, "phone"), (2, "region")}


def test_csv_line_numbers_start_at_two() -> None:
    rows = [
        csv_row(),
        csv_row(national_id=ID_B, birth_date="1980-01-01", phone="1"),
        csv_row(national_id=ID_C, birth_date="1995-12-31", region="x"),
    ]
    records, errors = parse_import(csv_text(*rows), "csv")
    assert [r.line for r in records] == [2]
    assert [(e.line, e.field) for e in errors] == [(3, "phone"), (4, "region")]


def test_csv_crlf_line_endings() -> None:
    text = "\r\n".join([HEADER, csv_row(), csv_row(national_id=ID_B, birth_date="1980-01-01", phone="1")]) + "\r\n"
    records, errors = parse_import(text, "csv")
    assert [r.line for r in records] == [2]
    assert [(e.line, e.field) for e in errors] == [(3, "phone")]


# --- duplicates and mixing ------------------------------------------------------------------------------


def test_duplicates_collapse_to_the_last_row_csv() -> None:
    text = csv_text(
        csv_row(name="First"),
        csv_row(national_id=ID_B, birth_date="1980-01-01", name="Other"),
        csv_row(name="Last", phone="13912345678"),
    )
    records, errors = parse_import(text, "csv")
    assert errors == []
    by_id = {r.national_id: r for r in records}
    assert len(records) == 2
    assert by_id[ID_A].name == "Last"
    assert by_id[ID_A].phone == "13912345678"
    assert by_id[ID_A].line == 4
    assert by_id[ID_B].name == "Other"


def test_duplicates_collapse_to_the_last_row_jsonl() -> None:
    text = jsonl_text(json_row(name="First"), json_row(national_id="11010519491231002x", name="Last"))
    records, errors = parse_import(text, "jsonl")
    assert errors == []
    assert [(r.line, r.name) for r in records] == [(2, "Last")]


def test_bad_row_does_not_block_good_rows() -> None:
    text = jsonl_text(
        json_row(),
        json_row(national_id=ID_B, birth_date="1980-01-01", locale="fr"),
        json_row(national_id=ID_C, birth_date="1995-12-31"),
    )
    records, errors = parse_import(text, "jsonl")
    assert [r.national_id for r in records] == [ID_A, ID_C]
    assert [(e.line, e.field) for e in errors] == [(2, "locale")]


def test_errors_are_sorted_by_line() -> None:
    text = csv_text(
        csv_row(phone="1"),
        csv_row() + ",extra",
        csv_row(region="1"),
        csv_row() + ",extra,extra",
    )
    _, errors = parse_import(text, "csv")
    assert [e.line for e in errors] == [2, 3, 4, 5]


def test_exotic_digit_in_national_id_is_a_row_error() -> None:
    records, errors = parse_import(
        jsonl_text(json_row(national_id="²1010519491231002X"), json_row(national_id=ID_B, birth_date="1980-01-01")),
        "jsonl",
    )
    assert [r.national_id for r in records] == [ID_B]
    assert [(e.line, e.field) for e in errors] == [(1, "national_id")]


@pytest.mark.parametrize(
    "text",
    [
        f"{HEADER}\n{csv_row()}\n\n{csv_row(national_id=' 11010519491231002x ')}\n",
        f"{HEADER}\n{csv_row()},extra\n{ID_B},李四\n\n{ID_C}\n",  # too long, short rows, a blank line
        f'{HEADER}\n"{ID_B}","王\n五",1980-01-01\r\n{csv_row()}\r\n',  # a quoted newline, CRLF
        f"national_id,name,birth_date,phone,region,national_id\n{ID_A},a,b,c,d,{ID_B}\n{ID_C},a\n{ID_A},a,b,c,d\n",
        "name,phone\n张三,13800138000\n",  # required columns missing: no row to read
    ],
)
def test_the_first_read_finds_the_national_ids_the_checks_read(text: str) -> None:
    # person_ids reads a CSV row's ID without building its dict; it must name each row's as the checks do.
    required = ("national_id", "name", "birth_date", "phone", "region")
    expected = [national_id_key(raw) for _, raw in read_rows(text, "csv", required)[0]]
    assert list(person_ids(io.StringIO(text, newline=""), "csv")) == expected
