"""Parsing and validating person import files (CSV or JSON lines): pure, no I/O.

Every bad row is reported with its line, field and reason; good rows are returned for the service
to land. Duplicates of one national ID within a file collapse to the last row ("one person, one
record"), as they would across files.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from core import national_id as nid
from core.text import LOCALES

# How far an import has got: (lines handled, good lines in all), for a progress display.
RowProgress = Callable[[int, int], None]

_PHONE = re.compile(r"1[3-9][0-9]{9}")
_REGION = re.compile(r"[1-9][0-9]{5}")
_ACCOUNT = re.compile(r"[0-9]{12,30}")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
# Only the extended form: date.fromisoformat would also take 20260307 or 2026-W10-6.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_FEN = 10_000_000_00  # 10 million yuan a month: anything above is a unit mistake


@dataclass(frozen=True)
class Pension:
    monthly_amount_fen: int
    bank_account: str
    start_month: date


@dataclass(frozen=True)
class PersonRecord:
    line: int
    national_id: str
    name: str
    birth_date: date
    phone: str
    region: str
    locale: str
    reference_photo: str | None
    pension: Pension | None


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str


_PENSION_FIELDS = ("monthly_amount", "bank_account", "start_month")


def field_text(raw: dict[str, Any], key: str) -> str:
    """A field as stripped text ("" when absent): CSV gives strings, JSON lines any scalar."""
    value = raw.get(key)
    if type(value) is str:  # a CSV field, most JSON ones: no str() call (a city's file has tens of millions)
        return value.strip()
    return "" if value is None else str(value).strip()


def national_id_key(raw: dict[str, Any]) -> str:
    """The row's national ID as records carry it (and duplicates are told by)."""
    return nid.normalise(field_text(raw, "national_id"))


def validate_row(line: int, raw: dict[str, Any], today: date) -> PersonRecord | list[RowError]:
    """The row as a record, or its errors; `today` bounds a birth date (taken once per file: a row
    each would be a tenth of the checks)."""
    errors: list[RowError] = []

    def bad(field: str, reason: str) -> None:
        errors.append(RowError(line, field, reason))

    national_id = national_id_key(raw)
    id_reason = nid.validate(national_id) if national_id else "is required"
    if id_reason:
        bad("national_id", id_reason)

    name = field_text(raw, "name")
    if not name:
        bad("name", "is required")
    elif len(name) > 100:
        bad("name", "is longer than 100 characters")

    birth: date | None = None
    try:
        birth = date.fromisoformat(field_text(raw, "birth_date"))
    except ValueError:
        bad("birth_date", "must be a date like 1950-03-07")
    if birth and not id_reason and nid.birth_date_of(national_id) != birth:
        bad("birth_date", "does not match the birth date inside the national ID")
    if birth and birth > today:
        bad("birth_date", "is in the future")

    phone = field_text(raw, "phone")
    if not _PHONE.fullmatch(phone):
        bad("phone", "must be an 11-digit mainland mobile number starting with 13-19")

    region = field_text(raw, "region")
    if not _REGION.fullmatch(region):
        bad("region", "must be a 6-digit administrative region code")

    locale = field_text(raw, "locale") or "zh-CN"
    if locale not in LOCALES:
        bad("locale", f"must be one of {', '.join(LOCALES)}")

    photo = field_text(raw, "reference_photo") or None

    pension = _pension(raw.get("pension"), bad)
    if errors:
        return errors
    assert birth is not None
    return PersonRecord(line, national_id, name, birth, phone, region, locale, photo, pension)


def _pension(raw: Any, bad: Any) -> Pension | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        bad("pension", "must be an object with monthly_amount, bank_account and start_month")
        return None
    amount_text = field_text(raw, "monthly_amount")
    account = field_text(raw, "bank_account")
    month = field_text(raw, "start_month")
    if not (amount_text or account or month):
        return None
    amount: int | None = None
    if isinstance(raw.get("monthly_amount"), (bool, float)):
        bad("pension.monthly_amount", "must be a whole number of fen")
    else:
        try:
            amount = int(amount_text)
        except ValueError:
            bad("pension.monthly_amount", "must be a whole number of fen")
    if amount is not None and not 0 < amount <= _MAX_FEN:
        bad("pension.monthly_amount", "must be more than 0 and at most 1,000,000,000 fen")
        amount = None
    account = account.replace(" ", "")
    account_ok = _ACCOUNT.fullmatch(account) is not None
    if not account_ok:
        bad("pension.bank_account", "must be 12 to 30 digits")
    start: date | None = None
    match = _MONTH.fullmatch(month)
    if match and 1 <= int(match.group(2)) <= 12:
        start = date(int(match.group(1)), int(match.group(2)), 1)
    else:
        bad("pension.start_month", "must be a month like 2026-01")
    if amount is None or start is None or not account_ok:
        return None
    return Pension(amount, account, start)


_CSV_REQUIRED = ("national_id", "name", "birth_date", "phone", "region")


T = TypeVar("T")
Row = tuple[int, dict[str, Any]]
Rows = list[Row]


def _rows_from_csv(
    lines: Iterable[str], required: Sequence[str], shape: Callable[[list[str]], Callable[[list[str]], T]]
) -> Iterator[tuple[int, T] | RowError]:
    """The CSV rows, each as `shape(header)` makes it of the row's fields."""
    # csv.reader rather than DictReader: half the cost a row (a city's file has millions), the header
    # stripped once, and the line number of the row itself, not of a blank line before it.
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader, [])]
    missing = [name for name in required if name not in header]
    if missing:
        yield from (RowError(1, name, "column is missing from the header") for name in missing)
        return
    make = shape(header)
    for row in reader:
        if not row:  # a blank line
            continue
        if len(row) > len(header):
            yield RowError(reader.line_num, "-", "has more columns than the header")
            continue
        yield reader.line_num, make(row)


def _as_dict(header: list[str]) -> Callable[[list[str]], dict[str, Any]]:
    return lambda row: dict(zip(header, row, strict=False))  # a short row lacks its last fields


def _national_id_of(header: list[str]) -> Callable[[list[str]], str]:
    """`national_id_key` of a row's fields, without their dict (the first read of a city's file)."""
    if header.count("national_id") > 1:  # which one the dict keeps depends on the row's length
        return lambda row: national_id_key(dict(zip(header, row, strict=False)))
    at = header.index("national_id")
    return lambda row: nid.normalise(row[at]) if at < len(row) else ""


def _rows_from_jsonl(lines: Iterable[str]) -> Iterator[Row | RowError]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowError(number, "-", f"is not valid JSON ({exc.msg})")
            continue
        if not isinstance(raw, dict):
            yield RowError(number, "-", "must be a JSON object")
            continue
        yield number, raw


def iter_rows(lines: Iterable[str], fmt: str, csv_required: Sequence[str]) -> Iterator[Row | RowError]:
    """The (line number, fields) rows of a CSV file (whose header must name `csv_required`) or of a
    JSON-lines file, one at a time in file order, with an error in place of every line that cannot
    be read as a row. `lines` may be an open file: nothing is held beyond the current row."""
    return _rows_from_csv(lines, csv_required, _as_dict) if fmt == "csv" else _rows_from_jsonl(lines)


def _lines(text: str, fmt: str) -> Iterable[str]:
    # csv reads its own line endings (quoted fields may hold newlines); JSON lines are split here.
    return io.StringIO(text) if fmt == "csv" else text.splitlines()


def read_rows(text: str, fmt: str, csv_required: Sequence[str]) -> tuple[Rows, list[RowError]]:
    """`iter_rows` of a whole text, as the rows and the errors apart."""
    rows: Rows = []
    errors: list[RowError] = []
    for item in iter_rows(_lines(text, fmt), fmt, csv_required):
        if isinstance(item, RowError):
            errors.append(item)
        else:
            rows.append(item)
    return rows, errors


def person_rows(lines: Iterable[str], fmt: str, after: int = 0) -> Iterator[PersonRecord | RowError]:
    """Every line of a person import after line `after` checked, in file order: a record to land, or
    the line's errors (the lines up to `after` are read, not checked: a resumed import skips them)."""
    today = date.today()
    for item in iter_rows(lines, fmt, _CSV_REQUIRED):
        if isinstance(item, RowError):
            if item.line > after:
                yield item
            continue
        line, raw = item
        if line <= after:
            continue
        if fmt == "csv":  # flat pension_* columns become the nested object JSON lines carry
            raw["pension"] = {f: raw.pop(f"pension_{f}", None) for f in _PENSION_FIELDS}
        result = validate_row(line, raw, today)
        if isinstance(result, list):
            yield from result
        else:
            yield result


def person_ids(lines: Iterable[str], fmt: str) -> Iterator[str]:
    """The national ID of every readable row of a person import, checked or not: a first read that
    finds the IDs a file holds more than once without checking every row."""
    if fmt == "csv":
        for row in _rows_from_csv(lines, _CSV_REQUIRED, _national_id_of):
            if not isinstance(row, RowError):
                yield row[1]
        return
    for item in _rows_from_jsonl(lines):
        if not isinstance(item, RowError):
            yield national_id_key(item[1])


def parse_import(text: str, fmt: str) -> tuple[list[PersonRecord], list[RowError]]:
    """Validate a whole file; return the records to land (last row per national ID) and all errors."""
    by_id: dict[str, PersonRecord] = {}
    errors: list[RowError] = []
    for item in person_rows(_lines(text, fmt), fmt):
        if isinstance(item, RowError):
            errors.append(item)
        else:
            by_id[item.national_id] = item
    return list(by_id.values()), sorted(errors, key=lambda e: e.line)


@dataclass(frozen=True)
class Batch:
    records: list[PersonRecord]
    errors: list[RowError]
    through: int  # the last line it covers


def batches(items: Iterable[PersonRecord | RowError], size: int) -> Iterator[Batch]:
    """`person_rows` cut into batches of about `size` records and errors; a line's
    errors never straddle two batches, so a batch is whole lines and `through` is a resume point."""
    records: list[PersonRecord] = []
    errors: list[RowError] = []
    through = 0
    for line, group in itertools.groupby(items, key=lambda item: item.line):
        if len(records) + len(errors) >= size:
            yield Batch(records, errors, through)
            records, errors = [], []
        for item in group:
            if isinstance(item, RowError):
                errors.append(item)
            else:
                records.append(item)
        through = line
    if records or errors:
        yield Batch(records, errors, through)


def iso_date(text: str) -> date | None:
    """A feed's date written as 2026-03-07; None for anything else (20260307, 2026-02-30)."""
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:  # 2026-02-30
        return None


def detect_format(filename: str) -> str:
    return "csv" if filename.lower().endswith(".csv") else "jsonl"


def normal_bank_account(text: str) -> str | None:
    """A bank account as stored (spaces removed), or None when it is not 12 to 30 digits: the import's
    rule, for an account given anywhere else (an administrator's correction)."""
    account = text.replace(" ", "")
    return account if _ACCOUNT.fullmatch(account) else None
