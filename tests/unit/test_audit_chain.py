"""The hash-chained audit log, checked in memory with ChainChecker."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from infra.audit import GENESIS, AuditEntry, ChainBreak, ChainChecker, canonical, chain_hash


class Row(NamedTuple):
    row_id: int
    entry: AuditEntry
    prev_hash: bytes
    stored_hash: bytes


T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_entries(n: int) -> list[AuditEntry]:
    return [
        AuditEntry(
            T0 + timedelta(seconds=i), f"operator:{i % 3}", "card.suspend", f"card:{i}", {"reason": "lost", "n": i}
        )
        for i in range(n)
    ]


def build_chain(entries: list[AuditEntry], first_id: int = 1) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS
    for offset, entry in enumerate(entries):
        digest = chain_hash(prev, entry)
        rows.append(Row(first_id + offset, entry, prev, digest))
        prev = digest
    return rows


def first_break(rows: list[Row]) -> ChainBreak | None:
    checker = ChainChecker()
    for row in rows:
        if found := checker.check(*row):
            return found
    return None


def test_genesis_is_32_zero_bytes() -> None:
    assert bytes(32) == GENESIS


def test_chain_hash_is_sha256_of_prev_and_canonical() -> None:
    entry = make_entries(1)[0]
    assert chain_hash(GENESIS, entry) == hashlib.sha256(GENESIS + canonical(entry)).digest()
    assert len(chain_hash(GENESIS, entry)) == 32


def test_canonical_ignores_key_order_of_details() -> None:
    a = AuditEntry(T0, "a", "x", "s", {"b": 1, "a": 2})
    b = AuditEntry(T0, "a", "x", "s", {"a": 2, "b": 1})
    assert canonical(a) == canonical(b)
    assert chain_hash(GENESIS, a) == chain_hash(GENESIS, b)


def test_chain_hash_depends_on_every_field_and_the_previous_hash() -> None:
    entry = AuditEntry(T0, "actor", "action", "subject", {"k": "v"})
    base = chain_hash(GENESIS, entry)
    variants = [
        dataclasses.replace(entry, at=T0 + timedelta(microseconds=1)),
        dataclasses.replace(entry, actor="actor2"),
        dataclasses.replace(entry, action="action2"),
        dataclasses.replace(entry, subject="subject2"),
        dataclasses.replace(entry, details={"k": "w"}),
        dataclasses.replace(entry, details={}),
    ]
    for variant in variants:
        assert chain_hash(GENESIS, variant) != base
    assert chain_hash(b"\x01" * 32, entry) != base


def test_intact_chain_has_no_break() -> None:
    assert first_break(build_chain(make_entries(10))) is None


def test_empty_chain_has_no_break() -> None:
    assert first_break([]) is None


def test_non_ascii_details_chain() -> None:
    entries = [AuditEntry(T0, "操作员", "人员.导入", "person:1", {"姓名": "张三", "note": "ok"})]
    assert first_break(build_chain(entries)) is None


def test_edited_details_break_at_that_row() -> None:
    rows = build_chain(make_entries(6))
    edited = dataclasses.replace(rows[3].entry, details={"reason": "stolen", "n": 3})
    rows[3] = rows[3]._replace(entry=edited)
    found = first_break(rows)
    assert found is not None
    assert found.row_id == rows[3].row_id
    assert "edited" in found.reason


def test_edited_actor_of_first_row_breaks_at_first_row() -> None:
    rows = build_chain(make_entries(4))
    rows[0] = rows[0]._replace(entry=dataclasses.replace(rows[0].entry, actor="someone-else"))
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 1


def test_edited_last_row_breaks_at_last_row() -> None:
    rows = build_chain(make_entries(5))
    rows[-1] = rows[-1]._replace(entry=dataclasses.replace(rows[-1].entry, subject="card:999"))
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 5


def test_edit_with_rehashed_row_breaks_at_the_next_row() -> None:
    rows = build_chain(make_entries(5))
    edited = dataclasses.replace(rows[2].entry, details={"reason": "forged"})
    rows[2] = rows[2]._replace(entry=edited, stored_hash=chain_hash(rows[2].prev_hash, edited))
    found = first_break(rows)
    assert found is not None
    assert found.row_id == rows[3].row_id
    assert "deleted or inserted" in found.reason


def test_deleted_middle_row_breaks_at_the_following_row() -> None:
    rows = build_chain(make_entries(6))
    del rows[2]  # row id 3 is gone
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 4
    assert "deleted or inserted" in found.reason


def test_deleted_first_row_breaks_at_the_new_first_row() -> None:
    rows = build_chain(make_entries(4))[1:]
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 2


def test_deleted_last_row_is_not_detectable_from_the_chain_alone() -> None:
    # A truncated tail still forms a valid chain; only an external anchor (the last hash) catches it.
    assert first_break(build_chain(make_entries(5))[:-1]) is None


def test_inserted_row_with_made_up_hash_breaks_at_that_row() -> None:
    rows = build_chain(make_entries(5), first_id=10)  # ids 10..14
    fake = AuditEntry(T0 + timedelta(seconds=1, milliseconds=500), "intruder", "payment.approve", "payment:1", {})
    inserted = Row(11, fake, rows[1].prev_hash, b"\xab" * 32)
    # Ids are unique: re-number so the inserted row sits between 10 and the old 11.
    renumbered = [rows[0], inserted, *(r._replace(row_id=r.row_id + 1) for r in rows[1:])]
    found = first_break(renumbered)
    assert found is not None
    assert found.row_id == 11


def test_inserted_row_with_made_up_prev_hash_breaks_at_that_row() -> None:
    rows = build_chain(make_entries(5))
    fake = AuditEntry(T0, "intruder", "x", "y", {})
    made_up_prev = b"\x11" * 32
    inserted = Row(99, fake, made_up_prev, chain_hash(made_up_prev, fake))
    found = first_break([*rows[:2], inserted, *rows[2:]])
    assert found is not None
    assert found.row_id == 99
    assert "deleted or inserted" in found.reason


def test_correctly_hashed_insert_breaks_at_the_next_row() -> None:
    rows = build_chain(make_entries(5))
    fake = AuditEntry(T0, "intruder", "x", "y", {})
    inserted = Row(99, fake, rows[1].stored_hash, chain_hash(rows[1].stored_hash, fake))
    found = first_break([*rows[:2], inserted, *rows[2:]])
    assert found is not None
    assert found.row_id == rows[2].row_id


def test_swapped_rows_break_at_the_first_swapped_position() -> None:
    rows = build_chain(make_entries(6))
    # Swap the content (entry and hashes) of ids 3 and 4; the ids stay in order.
    a, b = rows[2], rows[3]
    rows[2] = b._replace(row_id=a.row_id)
    rows[3] = a._replace(row_id=b.row_id)
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 3


def test_swapped_entries_only_break_at_the_first_swapped_position() -> None:
    rows = build_chain(make_entries(6))
    # Swap only the entries; each row keeps its own hashes.
    rows[1], rows[4] = rows[1]._replace(entry=rows[4].entry), rows[4]._replace(entry=rows[1].entry)
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 2
    assert "edited" in found.reason


def test_chain_breaks_report_only_the_first_break() -> None:
    rows = build_chain(make_entries(8))
    rows[2] = rows[2]._replace(entry=dataclasses.replace(rows[2].entry, actor="x"))
    rows[6] = rows[6]._replace(entry=dataclasses.replace(rows[6].entry, actor="y"))
    found = first_break(rows)
    assert found is not None
    assert found.row_id == 3
