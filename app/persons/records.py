"""Parsing and validating person import files (CSV or JSON lines): pure, no I/O.

Every bad row is reported with its line, field and reason; good rows are returned for the service
to land. Duplicates of one national ID within a file collapse to the last row ("one person, one
record"), as they would across files.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from app.i18n import LOCALES
from app.persons import national_id as nid

_PHONE = re.compile(r"1[3-9][0-9]{9}")
_REGION = re.compile(r"[1-9][0-9]{5}")
_ACCOUNT = re.compile(r"[0-9]{12,30}")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
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


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value).strip()


def validate_row(line: int, raw: dict[str, Any]) -> PersonRecord | list[RowError]:
    errors: list[RowError] = []

    def bad(field: str, reason: str) -> None:
        errors.append(RowError(line, field, reason))

    national_id = nid.normalise(_text(raw, "national_id"))
    id_reason = nid.validate(national_id) if national_id else "is required"
    if id_reason:
        bad("national_id", id_reason)

    name = _text(raw, "name")
    if not name:
        bad("name", "is required")
    elif len(name) > 100:
        bad("name", "is longer than 100 characters")

    birth: date | None = None
    try:
        birth = date.fromisoformat(_text(raw, "birth_date"))
    except ValueError:
        bad("birth_date", "must be a date like 1950-03-07")
    if birth and not id_reason and nid.birth_date_of(national_id) != birth:
        bad("birth_date", "does not match the birth date inside the national ID")
    if birth and birth > date.today():
        bad("birth_date", "is in the future")

    phone = _text(raw, "phone")
    if not _PHONE.fullmatch(phone):
        bad("phone", "must be an 11-digit mainland mobile number starting with 13-19")

    region = _text(raw, "region")
    if not _REGION.fullmatch(region):
        bad("region", "must be a 6-digit administrative region code")

    locale = _text(raw, "locale") or "zh-CN"
    if locale not in LOCALES:
        bad("locale", f"must be one of {', '.join(LOCALES)}")

    photo = _text(raw, "reference_photo") or None

    pension = _pension(raw.get("pension"), bad)
    if errors:
        return errors
    assert birth is not None
    return PersonRecord(line, national_id, name, birth, phone, region, locale, photo, pension)


def _pension(raw: Any, bad: Any) -> Pension | None:
    if raw is None or (isinstance(raw, dict) and not any(_text(raw, f) for f in _PENSION_FIELDS)):
        return None
    if not isinstance(raw, dict):
        bad("pension", "must be an object with monthly_amount, bank_account and start_month")
        return None
    amount_raw = raw.get("monthly_amount")
    amount: int | None = None
    if isinstance(amount_raw, (bool, float)):
        bad("pension.monthly_amount", "must be a whole number of fen")
    else:
        try:
            amount = int(str(amount_raw).strip())
        except ValueError:
            bad("pension.monthly_amount", "must be a whole number of fen")
    if amount is not None and not 0 < amount <= _MAX_FEN:
        bad("pension.monthly_amount", "must be more than 0 and at most 1,000,000,000 fen")
        amount = None
    account = _text(raw, "bank_account").replace(" ", "")
    if not _ACCOUNT.fullmatch(account):
        bad("pension.bank_account", "must be 12 to 30 digits")
    start: date | None = None
    match = _MONTH.fullmatch(_text(raw, "start_month"))
    if match and 1 <= int(match.group(2)) <= 12:
        start = date(int(match.group(1)), int(match.group(2)), 1)
    else:
        bad("pension.start_month", "must be a month like 2026-01")
    if amount is None or start is None or not _ACCOUNT.fullmatch(account):
        return None
    return Pension(amount, account, start)


_CSV_REQUIRED = ("national_id", "name", "birth_date", "phone", "region")


def _rows_from_csv(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [name for name in _CSV_REQUIRED if name not in header]
    if missing:
        return [], [RowError(1, name, "column is missing from the header") for name in missing]
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    for raw in reader:
        if None in raw:
            errors.append(RowError(reader.line_num, "-", "has more columns than the header"))
            continue
        flat: dict[str, Any] = {k.strip(): v for k, v in raw.items() if k is not None}
        flat["pension"] = {f: flat.pop(f"pension_{f}", None) for f in _PENSION_FIELDS}
        rows.append((reader.line_num, flat))
    return rows, errors


def _rows_from_jsonl(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(RowError(number, "-", f"is not valid JSON ({exc.msg})"))
            continue
        if not isinstance(raw, dict):
            errors.append(RowError(number, "-", "must be a JSON object"))
            continue
        rows.append((number, raw))
    return rows, errors


def parse_import(text: str, fmt: str) -> tuple[list[PersonRecord], list[RowError]]:
    """Validate a whole file; return the records to land (last row per national ID) and all errors."""
    rows, errors = _rows_from_csv(text) if fmt == "csv" else _rows_from_jsonl(text)
    by_id: dict[str, PersonRecord] = {}
    for line, raw in rows:
        result = validate_row(line, raw)
        if isinstance(result, list):
            errors.extend(result)
        else:
            by_id[result.national_id] = result
    return list(by_id.values()), sorted(errors, key=lambda e: e.line)


def detect_format(filename: str) -> str:
    return "csv" if filename.lower().endswith(".csv") else "jsonl"
