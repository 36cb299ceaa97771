"""Checkpoints of the audit chain: where a walk with the chain key last found it whole, so that a look
at the log checks only the rows after the newest checkpoint instead of the whole chain.

A checkpoint says: at `verified_at` a process holding AUDIT_CHAIN_KEY walked the chain (from its first
row: a full walk; or onward from an earlier checkpoint) up to row `last_id`, whose stored hash was
`hash`, with `row_count` rows up to it, and found `problems` (none: the chain held). It is kept in the
database (audit_checkpoints), signed with a key derived from the chain key as the anchors are, so
someone with only write access to the database cannot forge or alter one. They are recorded by the
full walk (`socialcard audit verify`, and the `audit.anchor` job once a day), by the job's onward walk
in between (every 10 minutes), and by a look at the page that walked LOOK_RECORDS_AFTER rows or more.

What starting from one finds (`check_onward`, the console's audit page). It takes the newest checkpoint
that held, is genuine and used today's keyed_from, confirms that row's stored hash is still the
checkpointed one, and walks on to the head:
- a row after the checkpoint edited, deleted or inserted: found, as by a full walk;
- the checkpointed row itself rewritten or deleted: found;
- a row before it edited, deleted or inserted: not seen; the next full walk finds it (`socialcard audit
  verify`, and the `audit.anchor` job once a day), and what the newest full walk found is shown with
  its time, so a break before the checkpoint is not hidden behind it;
- a forged or altered checkpoint: refused, and named;
- checkpoints deleted: the walk starts from an older one, or the first row (slower, not wrong).

Per-shard or per-person chains (issue 23) each need their own checkpoints: every checkpoint names its
chain, and the signature covers the name, so one chain's checkpoint cannot pass for another's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from infra import audit
from infra.db import Db

if TYPE_CHECKING:
    from infra.storage import ObjectStorage

CHAIN = "log"  # the one chain audit_log holds today
FULL_WALK_EVERY = timedelta(days=1)  # how often the anchor job walks every row, not just the new ones
# A look that walked this many rows onward records where it got to, so the next one starts there: the
# walk a look does stays about this long (a few ms per 1,000 rows) between two runs of the anchor job,
# however busy the log.
LOOK_RECORDS_AFTER = 1_000
_READ = 20  # checkpoints read, newest first, to find a genuine one past forged ones
FORGED = "forged"  # its signature does not match: written without the chain key, or altered
REKEYED = "rekeyed"  # verified with another keyed_from than audit_chain now holds: the boundary moved


@dataclass(frozen=True)
class Checkpoint:
    chain: str
    last_id: int  # every row up to this one was walked...
    hash: bytes  # ...this one's stored hash was this,
    row_count: int  # ...and these many rows were up to it
    keyed_from: int
    full_walk: bool  # from the first row; else onward from an earlier checkpoint
    problems: tuple[str, ...]  # what the walk found wrong; none: the chain held
    verified_at: datetime


@dataclass(frozen=True)
class Refusal:
    checkpoint: Checkpoint
    reason: str  # FORGED or REKEYED


class _Signed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    chain: str
    last_id: int
    hash: str
    row_count: int
    keyed_from: int
    full_walk: bool
    problems: tuple[str, ...]
    verified_at: datetime


def _signing_key(key: bytes) -> bytes:
    # Its own key, derived with a label, so neither a row hash nor an anchor's signature passes for one.
    return hmac.new(key, b"socialcard audit checkpoint v1", hashlib.sha256).digest()


def sign(key: bytes, checkpoint: Checkpoint) -> bytes:
    c = checkpoint
    body = _Signed(
        1,
        c.chain,
        c.last_id,
        c.hash.hex(),
        c.row_count,
        c.keyed_from,
        c.full_walk,
        c.problems,
        c.verified_at.astimezone(UTC),
    )
    return hmac.new(_signing_key(key), msgspec.json.encode(body), hashlib.sha256).digest()


def first_genuine(
    key: bytes, found: Sequence[tuple[Checkpoint, bytes]], keyed_from: int | None
) -> tuple[Checkpoint | None, list[Refusal]]:
    """The first of `found` (checkpoints with their signatures, best first) signed with `key` and, unless
    `keyed_from` is None, made with that boundary; and the ones refused before it."""
    refused: list[Refusal] = []
    for checkpoint, mac in found:
        if not hmac.compare_digest(sign(key, checkpoint), mac):
            refused.append(Refusal(checkpoint, FORGED))
        elif keyed_from is not None and checkpoint.keyed_from != keyed_from:
            refused.append(Refusal(checkpoint, REKEYED))
        else:
            return checkpoint, refused
    return None, refused


def moved(checkpoint: Checkpoint, stored: bytes | None) -> audit.ChainBreak | None:
    """The break when the checkpointed row's stored hash (None: the row is gone) is not the checkpointed one."""
    when = checkpoint.verified_at.astimezone(UTC).isoformat(timespec="seconds")
    if stored is None:
        return audit.ChainBreak(checkpoint.last_id, f"it is missing, verified at {when} (deleted)")
    if stored != checkpoint.hash:
        return audit.ChainBreak(
            checkpoint.last_id,
            f"its hash is not the one verified at {when} (the chain was rewritten at or before it)",
        )
    return None


# -- the database -------------------------------------------------------------------------------
_COLUMNS = "chain, last_id, hash, row_count, keyed_from, full_walk, problems, verified_at, mac"


async def _read(db: Db, where: str, order: str) -> list[tuple[Checkpoint, bytes]]:
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM audit_checkpoints WHERE chain = $1 AND {where} ORDER BY {order} LIMIT $2",
        CHAIN,
        _READ,
    )
    return [
        (
            Checkpoint(
                r["chain"],
                r["last_id"],
                r["hash"],
                r["row_count"],
                r["keyed_from"],
                r["full_walk"],
                tuple(r["problems"]),
                r["verified_at"],
            ),
            r["mac"],
        )
        for r in rows
    ]


async def record(db: Db, key: bytes, checkpoint: Checkpoint) -> None:
    c = checkpoint
    await db.execute(
        f"INSERT INTO audit_checkpoints ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        c.chain,
        c.last_id,
        c.hash,
        c.row_count,
        c.keyed_from,
        c.full_walk,
        list(c.problems),
        c.verified_at,
        sign(key, c),
    )


async def last_full_walk(db: Db, key: bytes) -> tuple[Checkpoint | None, list[Refusal]]:
    """The newest genuine full walk, whatever it found; and the forged ones newer than it."""
    return first_genuine(key, await _read(db, "full_walk", "verified_at DESC, id DESC"), None)


@dataclass(frozen=True)
class OnwardCheck:
    start: Checkpoint | None  # the checkpoint walked on from; None: from the first row
    keyed_from: int
    walked: int  # rows read after it
    first_id: int | None  # the first and last of them (None: no row after it)
    last: tuple[int, bytes] | None  # the last row read (id, stored hash), else the checkpoint's; None: empty
    broken: audit.ChainBreak | None
    refused: tuple[Refusal, ...]  # forged or rekeyed checkpoints passed over
    full_walk: Checkpoint | None  # the newest genuine full walk

    @property
    def rows(self) -> int:
        """Rows up to the last one read, the checkpoint's included."""
        return (self.start.row_count if self.start else 0) + self.walked


def onward_checkpoint(onward: OnwardCheck, at: datetime) -> Checkpoint | None:
    """The checkpoint an onward walk makes, with the break it found if any; None when it read no row
    (nothing written since its checkpoint, or an empty log)."""
    if onward.last is None or (onward.walked == 0 and onward.broken is None):
        return None
    broken = (f"row {onward.broken.row_id}: {onward.broken.reason}",) if onward.broken else ()
    return Checkpoint(CHAIN, *onward.last, onward.rows, onward.keyed_from, False, broken, at)


async def check_onward(db: Db, key: bytes, record_after: int | None = None) -> OnwardCheck:
    """The chain checked from the newest trusted checkpoint to the head (see the module's docstring).
    With `record_after`, a walk that found the chain whole over at least that many rows is recorded as
    a checkpoint."""
    found = await _walk_onward(db, key)
    if record_after is not None and found.broken is None and found.walked >= record_after:
        made = onward_checkpoint(found, datetime.now(UTC))
        if made is not None:
            await record(db, key, made)
    return found


async def _walk_onward(db: Db, key: bytes) -> OnwardCheck:
    keyed_from = await audit.keyed_from(db)
    start, refused = first_genuine(key, await _read(db, "problems = '{}'", "last_id DESC, id DESC"), keyed_from)
    full, refused_full = await last_full_walk(db, key)
    refusals = tuple(dict.fromkeys((*refused, *refused_full)))  # a forged full walk may show in both reads
    checker = audit.ChainChecker(key, keyed_from)
    after = -(2**63)
    last: tuple[int, bytes] | None = None
    if start is not None:
        broken = moved(start, await db.fetchval("SELECT hash FROM audit_log WHERE id = $1", start.last_id))
        last = (start.last_id, start.hash)
        if broken is not None:
            return OnwardCheck(start, keyed_from, 0, None, last, broken, refusals, full)
        checker = audit.ChainChecker(key, keyed_from, start.hash)
        after = start.last_id
    walked = 0
    first_id: int | None = None
    broken = None
    async for row in audit.rows(db, after):
        walked += 1
        first_id = row[0] if first_id is None else first_id
        last = (row[0], row[3])
        broken = checker.check(*row)
        if broken is not None:
            break
    return OnwardCheck(start, keyed_from, walked, first_id, last, broken, refusals, full)


async def full_walk(
    db: Db, storage: ObjectStorage, key: bytes, anchors: int | None = audit.DEFAULT_ANCHORS_CHECKED
) -> tuple[audit.Verification, Checkpoint | None]:
    """Every row, compared with the `anchors` highest anchors (audit.verify_with_anchors), recorded as a
    checkpoint with what it found; none when the log is empty."""
    found = await audit.verify_with_anchors(db, storage, key, anchors)
    if found.last is None:
        return found, None
    broken = (f"row {found.broken.row_id}: {found.broken.reason}",) if found.broken else ()
    checkpoint = Checkpoint(
        CHAIN, *found.last, found.rows, found.keyed_from, True, (*broken, *found.findings), datetime.now(UTC)
    )
    await record(db, key, checkpoint)
    return found, checkpoint


async def advance(db: Db, storage: ObjectStorage, key: bytes) -> Checkpoint | None:
    """The anchor job's walk: a full one when the last is FULL_WALK_EVERY old (or there is none), else
    onward from the newest trusted checkpoint; recorded as a checkpoint (with what it found), unless no
    row was written since."""
    now = datetime.now(UTC)
    full, _ = await last_full_walk(db, key)
    if full is None or now - full.verified_at >= FULL_WALK_EVERY:
        return (await full_walk(db, storage, key))[1]
    checkpoint = onward_checkpoint(await check_onward(db, key), now)
    if checkpoint is not None:
        await record(db, key, checkpoint)
    return checkpoint
