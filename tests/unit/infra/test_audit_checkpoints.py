"""Checkpoints of the audit chains, checked in memory: their signature (the chain's name in it), which one a
walk starts from, the checkpointed row's hash, a ChainChecker fed from a checkpoint on, and the
checkpoints an onward walk and a full walk make, one per chain."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from infra.audit import GENESIS, AuditEntry, ChainBreak, ChainChecker, ChainWalk, Verification, chain_hash
from infra.audit_checkpoints import (
    FORGED,
    LEGACY_NAME,
    REKEYED,
    ChainOnward,
    Checkpoint,
    OnwardCheck,
    Refusal,
    _Signed,
    first_genuine,
    full_walk_checkpoints,
    moved,
    onward_checkpoints,
    sign,
    summary,
)

CHAIN = "7"
KEY = bytes(range(32))
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def checkpoint(last_id: int = 40, **changes: object) -> Checkpoint:
    made = Checkpoint(CHAIN, last_id, bytes([last_id % 256]) * 32, last_id, 1, True, (), T0)
    return dataclasses.replace(made, **changes)


def test_a_checkpoint_signed_with_the_key_is_taken() -> None:
    c = checkpoint()
    assert first_genuine(KEY, [(c, sign(KEY, c))], 1) == (c, [])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chain", "shard-2"),  # one chain's checkpoint cannot pass for another's (issue 23)
        ("last_id", 41),
        ("hash", b"\x07" * 32),
        ("row_count", 39),
        ("keyed_from", 2),
        ("full_walk", False),
        ("problems", ("row 3: edited",)),
        ("verified_at", T0 + timedelta(microseconds=1)),
    ],
)
def test_every_field_is_signed(field: str, value: object) -> None:
    genuine = checkpoint()
    altered = dataclasses.replace(genuine, **{field: value})
    assert sign(KEY, altered) != sign(KEY, genuine)
    assert first_genuine(KEY, [(altered, sign(KEY, genuine))], None) == (None, [Refusal(altered, FORGED)])


def test_the_time_is_signed_as_an_instant_whatever_its_zone() -> None:
    c = checkpoint()
    in_china = dataclasses.replace(c, verified_at=T0.astimezone(ZoneInfo("Asia/Shanghai")))
    assert sign(KEY, in_china) == sign(KEY, c)


def test_a_forged_newest_checkpoint_is_refused_and_the_next_genuine_one_taken() -> None:
    forged, genuine = checkpoint(90), checkpoint(40)
    found = [(forged, sign(bytes(32), forged)), (genuine, sign(KEY, genuine))]
    assert first_genuine(KEY, found, 1) == (genuine, [Refusal(forged, FORGED)])


def test_a_checkpoint_signed_like_a_row_hash_is_refused() -> None:
    """The signing key is derived from the chain key with a label: the chain key itself does not sign."""
    c = checkpoint()
    body = _Signed(1, c.chain, c.last_id, c.hash.hex(), c.row_count, c.keyed_from, c.full_walk, c.problems, T0)
    mac = hmac.new(KEY, msgspec.json.encode(body), hashlib.sha256).digest()
    assert first_genuine(KEY, [(c, mac)], None) == (None, [Refusal(c, FORGED)])


def test_a_checkpoint_made_with_another_boundary_is_refused_when_one_is_asked_for() -> None:
    moved_boundary = checkpoint(keyed_from=1000)
    found = [(moved_boundary, sign(KEY, moved_boundary))]
    assert first_genuine(KEY, found, 1) == (None, [Refusal(moved_boundary, REKEYED)])
    assert first_genuine(KEY, found, None) == (moved_boundary, [])  # the last full walk, whatever it used


def test_none_found() -> None:
    assert first_genuine(KEY, [], 1) == (None, [])


def test_the_checkpointed_row_must_still_have_its_hash() -> None:
    c = checkpoint()
    assert moved(c, c.hash) is None
    assert moved(c, b"\x09" * 32) == ChainBreak(
        40,
        "its hash is not the one verified at 2026-03-01T09:00:00+00:00 (the chain was rewritten at or before it)",
        7,
    )
    assert moved(c, None) == ChainBreak(40, "it is missing, verified at 2026-03-01T09:00:00+00:00 (deleted)", 7)


def _chain(n: int) -> list[tuple[int, AuditEntry, bytes, bytes]]:
    rows = []
    prev = GENESIS
    for i in range(1, n + 1):
        entry = AuditEntry(T0 + timedelta(seconds=i), "system:test", "test.event", f"thing:{i}", {"n": i})
        digest = chain_hash(KEY, prev, entry)
        rows.append((i, entry, prev, digest))
        prev = digest
    return rows


def test_a_checker_started_at_a_checkpoint_checks_the_rows_after_it() -> None:
    rows = _chain(6)
    checker = ChainChecker(KEY, 1, rows[2][3])  # the checkpoint: row 3's hash
    assert [checker.check(*row) for row in rows[3:]] == [None, None, None]


def test_a_checker_started_at_a_checkpoint_finds_an_edit_after_it() -> None:
    rows = _chain(6)
    row_id, entry, prev, digest = rows[4]
    rows[4] = (row_id, dataclasses.replace(entry, details={"n": 99}), prev, digest)
    checker = ChainChecker(KEY, 1, rows[2][3])
    assert [checker.check(*row) for row in rows[3:5]][-1] == ChainBreak(
        5, "its content does not match its keyed hash (edited, or rehashed without the chain key)"
    )


def test_a_checker_started_at_the_wrong_checkpoint_breaks_at_the_first_row() -> None:
    """A row deleted just after the checkpoint: the next row does not follow it."""
    rows = _chain(6)
    checker = ChainChecker(KEY, 1, rows[2][3])
    assert checker.check(*rows[4]) == ChainBreak(
        5, "does not follow the previous row (a row was deleted or inserted before it)"
    )


def _onward(**changes: object) -> OnwardCheck:
    start = checkpoint(40)
    made = ChainOnward(7, start, 3, 41, (43, b"\x05" * 32), None)
    empty = [ChainOnward(c, None, 0, None, None, None) for c in range(32)]
    empty[7] = dataclasses.replace(made, **changes)
    return OnwardCheck(1, tuple(empty), (), None)


def test_an_onward_walk_checkpoints_the_last_row_it_read_in_each_chain() -> None:
    at = T0 + timedelta(minutes=10)
    assert onward_checkpoints(_onward(), at) == [Checkpoint(CHAIN, 43, b"\x05" * 32, 43, 1, False, (), at)]


def test_an_onward_walk_that_broke_checkpoints_its_finding() -> None:
    broken = ChainBreak(42, "its content does not match its keyed hash (edited, or rehashed without the chain key)", 7)
    (made,) = onward_checkpoints(_onward(broken=broken, last=(42, b"\x06" * 32), walked=2), T0)
    assert (made.last_id, made.row_count, made.problems) == (42, 42, (f"row 7/42: {broken.reason}",))


def test_an_onward_walk_that_read_nothing_makes_no_checkpoint() -> None:
    assert onward_checkpoints(_onward(walked=0, first_id=None, last=(40, checkpoint(40).hash)), T0) == []
    assert onward_checkpoints(_onward(start=None, walked=0, first_id=None, last=None), T0) == []  # an empty log


def test_a_checkpoint_of_one_chain_does_not_pass_for_another() -> None:
    c = checkpoint()
    moved_over = dataclasses.replace(c, chain="8")
    assert first_genuine(KEY, [(moved_over, sign(KEY, c))], 1) == (None, [Refusal(moved_over, FORGED)])


def test_the_old_single_chains_checkpoints_are_chain_0s() -> None:
    c = checkpoint(chain=LEGACY_NAME)
    assert moved(c, None) == ChainBreak(40, "it is missing, verified at 2026-03-01T09:00:00+00:00 (deleted)", 0)


def test_a_full_walk_checkpoints_every_chain_with_rows_or_problems() -> None:
    walks = [ChainWalk(c, 0, 0, None, None, ()) for c in range(32)]
    walks[3] = ChainWalk(3, 5, 0, None, (5, b"\x03" * 32), ())
    walks[4] = ChainWalk(4, 2, 0, ChainBreak(2, "edited", 4), (2, b"\x04" * 32), ())
    walks[5] = ChainWalk(5, 0, 0, None, None, ("rows deleted from the tail or the table truncated: chain 5 is empty",))
    found = Verification(1, tuple(walks), (), ("anchor x: forged",))
    made = full_walk_checkpoints(found, T0)
    assert [(c.chain, c.last_id, c.row_count, c.full_walk) for c in made] == [
        ("3", 5, 5, True),
        ("4", 2, 2, True),
        ("5", 0, 0, True),
    ]
    assert made[0].problems == ("anchor x: forged",)  # the whole log's finding goes with every chain
    assert made[1].problems == ("row 4/2: edited", "anchor x: forged")
    assert made[2].hash == GENESIS
    together = summary({3: made[0], 4: made[1], 5: made[2]})
    assert together is not None
    assert (together.row_count, together.chains) == (7, 3)
    assert together.problems == (
        "anchor x: forged",
        "row 4/2: edited",
        "rows deleted from the tail or the table truncated: chain 5 is empty",
    )
