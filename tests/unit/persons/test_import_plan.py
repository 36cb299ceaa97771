"""The pure parts of the person import: the file's fingerprint, repeated national IDs, batches that
never split a line, and resuming after a line."""

from __future__ import annotations

import hashlib

import pytest

from core.records import PersonRecord, RowError, batches, person_ids, person_rows
from persons.service import fingerprint, numbered_errors, repeated_ids
from tests.unit.core.test_records import ID_A, ID_B, ID_C, csv_row, csv_text


def test_fingerprint_is_the_sha256_and_the_line_count() -> None:
    data = b"a,b\n1,2\n" + "张三\n".encode()
    assert fingerprint(iter([data[:5], data[5:]])) == (hashlib.sha256(data).digest(), 3)
    assert fingerprint(iter([b"no newline at the end"]))[1] == 1
    assert fingerprint(iter([]))[1] == 0


def test_fingerprint_refuses_what_is_not_utf8_before_anything_lands() -> None:
    with pytest.raises(UnicodeDecodeError):
        fingerprint(iter([b"ok\n", "张".encode("gbk")]))
    # A character cut between two chunks is still UTF-8.
    whole = "张三\n".encode()
    assert fingerprint(iter([whole[:1], whole[1:]]))[1] == 1


def test_repeated_ids_are_the_keys_seen_more_than_once() -> None:
    assert repeated_ids(iter(["a", "b", "a", "c", "c", "c"])) == {hash("a"), hash("c")}
    assert repeated_ids(iter([])) == frozenset()


def test_person_ids_are_normalised_as_records_carry_them_even_on_bad_rows() -> None:
    text = csv_text(csv_row(national_id=" 11010519491231002x "), csv_row(national_id=ID_B, phone="1"))
    assert list(person_ids(text.splitlines(keepends=True), "csv")) == [ID_A, ID_B]


def test_person_rows_after_a_line_skip_it_and_the_lines_before() -> None:
    rows = [csv_row(), csv_row(national_id=ID_B, birth_date="1980-01-01", phone="1"), csv_row(national_id=ID_C)]
    items = list(person_rows(csv_text(*rows).splitlines(keepends=True), "csv", after=3))
    assert items == [RowError(4, "birth_date", "does not match the birth date inside the national ID")]


def test_batches_hold_whole_lines_and_say_where_they_end() -> None:
    rows = [
        csv_row(),
        csv_row(national_id=ID_B, birth_date="1980-01-01", phone="1", region="x"),  # two errors, one line
        csv_row(national_id=ID_B, birth_date="1980-01-01"),
        csv_row(national_id=ID_C, birth_date="1995-12-31"),
    ]
    cut = list(batches(person_rows(csv_text(*rows).splitlines(keepends=True), "csv"), 2))
    assert [(len(b.records), len(b.errors), b.through) for b in cut] == [(1, 2, 3), (2, 0, 5)]
    assert all(isinstance(r, PersonRecord) for b in cut for r in b.records)
    assert list(batches(iter([]), 10)) == []


def test_a_lines_errors_are_numbered_in_the_order_found() -> None:
    errors = [RowError(7, "phone", "p"), RowError(3, "name", "n"), RowError(7, "region", "r")]
    assert numbered_errors(errors) == [(3, 0, "name", "n"), (7, 0, "phone", "p"), (7, 1, "region", "r")]


def test_a_csv_row_after_a_blank_line_is_reported_at_its_own_line() -> None:
    text = csv_text(csv_row(), "", csv_row(national_id=ID_B, birth_date="1980-01-01", phone="1"))
    assert list(person_rows(text.splitlines(keepends=True), "csv"))[1:] == [
        RowError(4, "phone", "must be an 11-digit mainland mobile number starting with 13-19")
    ]
