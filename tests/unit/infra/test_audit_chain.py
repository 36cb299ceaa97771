"""The keyed, hash-chained audit log and its anchors, checked in memory (ChainChecker, AnchorComparison),
one chain at a time: chain 0 (the one with rows from before the key) unless a test says otherwise."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from infra.audit import (
    ANCHOR_PREFIX,
    CHAINS,
    GENESIS,
    Anchor,
    AnchorComparison,
    AnchorError,
    AuditEntry,
    ChainBreak,
    ChainChecker,
    Head,
    anchor_name,
    canonical,
    chain_hash,
    chain_of,
    legacy_chain_hash,
    open_anchor,
    seal_anchor,
)
from infra.config import dev_secrets


class Row(NamedTuple):
    row_id: int
    entry: AuditEntry
    prev_hash: bytes
    stored_hash: bytes


T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = bytes(range(32))


def make_entries(n: int) -> list[AuditEntry]:
    return [
        AuditEntry(
            T0 + timedelta(seconds=i), f"operator:{i % 3}", "card.suspend", f"card:{i}", {"reason": "lost", "n": i}
        )
        for i in range(n)
    ]


def build_chain(entries: list[AuditEntry], first_id: int = 1, keyed_from: int = 1) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS
    for offset, entry in enumerate(entries):
        row_id = first_id + offset
        digest = chain_hash(KEY, prev, entry) if row_id >= keyed_from else legacy_chain_hash(prev, entry)
        rows.append(Row(row_id, entry, prev, digest))
        prev = digest
    return rows


def rehash_from(rows: list[Row], index: int) -> list[Row]:
    """What the database owner can do: recompute every hash from `index` on with plain SHA-256."""
    out = list(rows[:index])
    prev = out[-1].stored_hash if out else GENESIS
    for row in rows[index:]:
        digest = legacy_chain_hash(prev, row.entry)
        out.append(row._replace(prev_hash=prev, stored_hash=digest))
        prev = digest
    return out


def first_break(rows: list[Row], keyed_from: int = 1, key: bytes = KEY, chain: int = 0) -> ChainBreak | None:
    checker = ChainChecker(key, keyed_from, chain=chain)
    for row in rows:
        if found := checker.check(*row):
            return found
    return None


def test_genesis_is_32_zero_bytes() -> None:
    assert bytes(32) == GENESIS


def test_chain_hash_is_hmac_sha256_of_prev_and_canonical_under_the_key() -> None:
    entry = make_entries(1)[0]
    assert chain_hash(KEY, GENESIS, entry) == hmac.new(KEY, GENESIS + canonical(entry), hashlib.sha256).digest()
    assert len(chain_hash(KEY, GENESIS, entry)) == 32
    assert chain_hash(KEY, GENESIS, entry) != chain_hash(bytes(32), GENESIS, entry)


def test_legacy_chain_hash_is_plain_sha256_of_prev_and_canonical() -> None:
    entry = make_entries(1)[0]
    assert legacy_chain_hash(GENESIS, entry) == hashlib.sha256(GENESIS + canonical(entry)).digest()
    assert legacy_chain_hash(GENESIS, entry) != chain_hash(KEY, GENESIS, entry)


def test_canonical_ignores_key_order_of_details() -> None:
    a = AuditEntry(T0, "a", "x", "s", {"b": 1, "a": 2})
    b = AuditEntry(T0, "a", "x", "s", {"a": 2, "b": 1})
    assert canonical(a) == canonical(b)
    assert chain_hash(KEY, GENESIS, a) == chain_hash(KEY, GENESIS, b)


def test_chain_hash_depends_on_every_field_and_the_previous_hash() -> None:
    entry = AuditEntry(T0, "actor", "action", "subject", {"k": "v"})
    base = chain_hash(KEY, GENESIS, entry)
    variants = [
        dataclasses.replace(entry, at=T0 + timedelta(microseconds=1)),
        dataclasses.replace(entry, actor="actor2"),
        dataclasses.replace(entry, action="action2"),
        dataclasses.replace(entry, subject="subject2"),
        dataclasses.replace(entry, details={"k": "w"}),
        dataclasses.replace(entry, details={}),
    ]
    for variant in variants:
        assert chain_hash(KEY, GENESIS, variant) != base
    assert chain_hash(KEY, b"\x01" * 32, entry) != base


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


def test_edit_rehashed_with_the_key_breaks_at_the_next_row() -> None:
    rows = build_chain(make_entries(5))
    edited = dataclasses.replace(rows[2].entry, details={"reason": "forged"})
    rows[2] = rows[2]._replace(entry=edited, stored_hash=chain_hash(KEY, rows[2].prev_hash, edited))
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
    inserted = Row(99, fake, made_up_prev, chain_hash(KEY, made_up_prev, fake))
    found = first_break([*rows[:2], inserted, *rows[2:]])
    assert found is not None
    assert found.row_id == 99
    assert "deleted or inserted" in found.reason


def test_correctly_hashed_insert_breaks_at_the_next_row() -> None:
    rows = build_chain(make_entries(5))
    fake = AuditEntry(T0, "intruder", "x", "y", {})
    inserted = Row(99, fake, rows[1].stored_hash, chain_hash(KEY, rows[1].stored_hash, fake))
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


# -- the key: what the database owner cannot recompute --------------------------------------------
def test_edit_rehashed_with_plain_sha256_breaks_at_the_edited_row() -> None:
    rows = build_chain(make_entries(6))
    rows[2] = rows[2]._replace(entry=dataclasses.replace(rows[2].entry, details={"reason": "forged"}))
    found = first_break(rehash_from(rows, 2))  # every later hash recomputed, as the owner can
    assert found is not None
    assert found.row_id == 3
    assert "without the chain key" in found.reason


def test_whole_log_rebuilt_with_plain_sha256_breaks_at_its_first_row() -> None:
    found = first_break(rehash_from(build_chain(make_entries(4)), 0))
    assert found is not None
    assert found.row_id == 1


def test_another_key_breaks_at_the_first_keyed_row() -> None:
    found = first_break(build_chain(make_entries(3)), key=bytes(32))
    assert found is not None
    assert found.row_id == 1


def test_rows_before_keyed_from_verify_in_the_plain_form() -> None:
    rows = build_chain(make_entries(6), keyed_from=4)  # ids 1-3 written before the key
    checker = ChainChecker(KEY, 4)
    assert all(checker.check(*row) is None for row in rows)
    assert checker.legacy_rows == 3


def test_a_rewritten_legacy_prefix_breaks_at_the_first_keyed_row() -> None:
    rows = build_chain(make_entries(6), keyed_from=4)
    rows[1] = rows[1]._replace(entry=dataclasses.replace(rows[1].entry, actor="someone-else"))
    rebuilt = [*rehash_from(rows[:3], 1), *rows[3:]]  # the legacy rows recomputed, the keyed ones cannot be
    found = first_break(rebuilt, keyed_from=4)
    assert found is not None
    assert found.row_id == 4
    assert "deleted or inserted" in found.reason


def test_an_unkeyed_row_at_or_after_keyed_from_breaks() -> None:
    rows = build_chain(make_entries(6), keyed_from=99)  # all in the plain form
    found = first_break(rows, keyed_from=4)
    assert found is not None
    assert found.row_id == 4


def test_raising_keyed_from_past_the_head_is_what_the_anchors_catch() -> None:
    rows = build_chain(make_entries(5))
    anchor = head_anchor(5, rows[-1].stored_hash, 5)
    rows[1] = rows[1]._replace(entry=dataclasses.replace(rows[1].entry, actor="someone-else"))
    rebuilt = rehash_from(rows, 0)
    assert first_break(rebuilt, keyed_from=6) is None  # the chain alone: all "legacy", all consistent
    found = compare(rebuilt, [anchor], keyed_from=6)
    assert any("keyed from seq 6 of chain 0" in f and "says from 1" in f and "boundary was moved" in f for f in found)
    assert any("row 0/5 has a different hash" in f for f in found)


def test_only_chain_0_has_an_unkeyed_part() -> None:
    """Every other chain is keyed from its first row: raising keyed_from does not make its rows legacy."""
    rebuilt = rehash_from(build_chain(make_entries(3)), 0)
    assert first_break(rebuilt, keyed_from=10) is None
    broken = first_break(rebuilt, keyed_from=10, chain=5)
    assert broken == ChainBreak(1, broken.reason if broken else "", 5)
    assert broken is not None
    assert broken.row == "5/1"
    assert "keyed hash" in broken.reason


def test_a_subjects_chain_is_stable_and_every_chain_is_used() -> None:
    assert chain_of("person:0193e0f0-0000-7000-8000-000000000023") == 9  # the same in every process and release
    assert {chain_of(f"person:{i}") for i in range(2000)} == set(range(CHAINS))


# -- anchors --------------------------------------------------------------------------------------
def compare(rows: list[Row], anchors: list[Anchor], keyed_from: int = 1, chain: int = 0) -> list[str]:
    comparison = AnchorComparison(anchors, keyed_from, chain)
    for row in rows:
        comparison.see(row.row_id, row.stored_hash)
    return comparison.findings()


def head_anchor(seq: int, digest: bytes, count: int, keyed_from: int = 1, at: datetime = T0, chain: int = 0) -> Anchor:
    """An anchor of one chain's head (the others empty)."""
    return Anchor((Head(chain, seq, digest, count),), keyed_from, CHAINS, at)


def anchor_of(rows: list[Row], at: datetime = T0) -> Anchor:
    return head_anchor(rows[-1].row_id, rows[-1].stored_hash, len(rows), at=at)


TWO_HEADS = Anchor((Head(0, 42, b"\x07" * 32, 40), Head(5, 3, b"\x05" * 32, 3)), 3, CHAINS, T0)


def test_anchor_round_trip() -> None:
    anchor = dataclasses.replace(TWO_HEADS, at=T0 + timedelta(microseconds=123))
    assert open_anchor(KEY, seal_anchor(KEY, anchor)) == anchor
    document = json.loads(seal_anchor(KEY, anchor))
    assert document["v"] == 2
    assert document["heads"] == [[0, 42, "07" * 32, 40], [5, 3, "05" * 32, 3]]
    assert document["keyed_from"] == 3
    assert document["chains"] == CHAINS
    assert len(bytes.fromhex(document["mac"])) == 32
    assert (anchor.count, anchor.position) == (43, 45)


def test_an_anchor_from_before_the_chains_is_chain_0s_head() -> None:
    """Version 1 anchors (one chain, before 0027) still open, as chain 0's head, under their old names."""
    old = Anchor((Head(0, 42, b"\x07" * 32, 40),), 3, 1, T0, version=1)
    sealed = seal_anchor(KEY, old)
    document = json.loads(sealed)
    assert (document["v"], document["last_id"], document["count"]) == (1, 42, 40)
    assert open_anchor(KEY, sealed) == old
    assert anchor_name(old) == f"{ANCHOR_PREFIX}{2**63 - 1 - 42:019d}-20260301T090000000000Z.json"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heads", [[0, 43, "07" * 32, 40], [5, 3, "05" * 32, 3]]),
        ("heads", [[0, 42, "07" * 32, 40], [6, 3, "05" * 32, 3]]),  # a head moved to another chain
        ("heads", [[0, 42, "07" * 32, 40]]),  # a chain's head left out
        ("keyed_from", 1),
        ("chains", 64),
        ("at", "2026-03-02T09:00:00Z"),
    ],
)
def test_an_altered_anchor_is_refused(field: str, value: object) -> None:
    document = json.loads(seal_anchor(KEY, TWO_HEADS))
    document[field] = value
    with pytest.raises(AnchorError, match="signature"):
        open_anchor(KEY, json.dumps(document).encode())


def test_an_anchor_signed_with_another_key_is_refused() -> None:
    with pytest.raises(AnchorError, match="signature"):
        open_anchor(KEY, seal_anchor(bytes(32), head_anchor(1, GENESIS, 1)))


def test_an_anchor_keyed_like_a_row_hash_is_refused() -> None:
    # The anchor key is derived with its own label: the chain key itself does not sign anchors.
    document = json.loads(seal_anchor(KEY, head_anchor(1, GENESIS, 1)))
    body = {k: v for k, v in document.items() if k != "mac"}
    document["mac"] = hmac.new(KEY, json.dumps(body).encode(), hashlib.sha256).hexdigest()
    with pytest.raises(AnchorError):
        open_anchor(KEY, json.dumps(document).encode())


@pytest.mark.parametrize("data", [b"", b"{}", b"not json", b'{"v": 1}', b'{"v": 2}', b'{"v": 3}'])
def test_garbage_is_not_an_anchor(data: bytes) -> None:
    with pytest.raises(AnchorError):
        open_anchor(KEY, data)


def test_anchor_names_list_the_newest_heads_first() -> None:
    names = [anchor_name(head_anchor(seq, GENESIS, seq, chain=seq % CHAINS)) for seq in (1, 9, 10, 1234, 2**40)]
    assert all(name.startswith(ANCHOR_PREFIX) for name in names)
    assert sorted(names) == names[::-1]
    later = anchor_name(head_anchor(10, GENESIS, 10, at=T0 + timedelta(minutes=10)))
    assert later != names[2]  # two anchors of one position are both kept
    # A row written to any chain moves the position on.
    assert anchor_name(TWO_HEADS) > anchor_name(
        dataclasses.replace(TWO_HEADS, heads=(*TWO_HEADS.heads, Head(9, 1, GENESIS, 1)))
    )


def test_a_log_that_matches_its_anchors_has_no_findings() -> None:
    rows = build_chain(make_entries(8))
    assert compare(rows, [anchor_of(rows[:3]), anchor_of(rows[:6]), anchor_of(rows)]) == []
    assert compare(rows, []) == []


def test_rows_cut_from_the_tail_are_found() -> None:
    rows = build_chain(make_entries(5))
    anchors = [anchor_of(rows[:3]), anchor_of(rows, T0 + timedelta(hours=1))]
    assert first_break(rows[:3]) is None  # the chain alone cannot tell
    (found,) = compare(rows[:3], anchors)
    assert "tail" in found
    assert "chain 0 ends at row 0/3 (3 row(s))" in found
    assert "5 row(s) up to row 0/5" in found
    assert "2026-03-01T10:00:00+00:00" in found


def test_a_truncated_log_is_found() -> None:
    rows = build_chain(make_entries(5))
    (found,) = compare([], [anchor_of(rows[:2]), anchor_of(rows)])
    assert "chain 0 is empty (0 row(s))" in found
    assert "up to row 0/5" in found
    assert "2 anchors show it" in found


def test_a_rewritten_anchored_row_is_found() -> None:
    rows = build_chain(make_entries(5))
    anchors = [anchor_of(rows[:2]), anchor_of(rows[:4])]
    rows[2] = rows[2]._replace(entry=dataclasses.replace(rows[2].entry, actor="x"))
    (found,) = compare(rehash_from(rows, 2), anchors)
    assert "row 0/4 has a different hash" in found


def test_a_deleted_anchored_row_below_the_head_is_found() -> None:
    rows = build_chain(make_entries(5))
    anchors = [anchor_of(rows[:3])]
    (found,) = compare([*rows[:2], *rows[3:]], anchors)
    assert "row 0/3, anchored at" in found
    assert "missing" in found


def test_a_row_count_that_differs_from_the_anchor_is_found() -> None:
    rows = build_chain(make_entries(5))
    anchor = anchor_of(rows)
    anchor = dataclasses.replace(anchor, heads=(dataclasses.replace(anchor.heads[0], count=7),))
    (found,) = compare(rows, [anchor])
    assert "5 row(s) up to row 0/5, but the anchor" in found
    assert "counted 7" in found


def test_each_chain_is_compared_with_its_own_head_only() -> None:
    rows = build_chain(make_entries(5))
    other = head_anchor(99, GENESIS, 99, chain=7)  # chain 7's head says nothing of chain 0
    assert compare(rows, [other]) == []
    (found,) = compare([], [anchor_of(rows)], chain=7) or ["none"]
    assert found == "none"  # chain 0's head says nothing of chain 7
    (cut,) = compare([], [other], chain=7)
    assert "chain 7 is empty" in cut
    assert "up to row 7/99" in cut


def test_dev_secrets_written_before_the_key_gain_it(tmp_path: Path) -> None:
    old = {
        name: base64.b64encode(bytes([i]) * 32).decode()
        for i, name in enumerate(("token_signing_key", "qr_signing_key", "data_encryption_key", "lookup_hash_key"), 1)
    }
    old |= {"s3_access_key_id": "dev-1", "s3_secret_access_key": "s"}
    (tmp_path / "dev-secrets.json").write_text(json.dumps(old))
    secrets = dev_secrets(tmp_path)
    assert {k: secrets[k] for k in old} == old  # the others untouched: they decrypt existing data
    assert len(base64.b64decode(secrets["audit_chain_key"])) == 32
    assert dev_secrets(tmp_path) == secrets  # kept in the file
