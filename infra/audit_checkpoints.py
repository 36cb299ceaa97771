"""Checkpoints of the audit chains: where a walk with the chain key last found a chain whole, so that a
look at the log checks only each chain's rows after its newest checkpoint instead of every chain.

A checkpoint says: at `verified_at` a process holding AUDIT_CHAIN_KEY walked one chain (from its first
row: a full walk; or onward from an earlier checkpoint) up to row `last_id` (its seq in the chain),
whose stored hash was `hash`, with `row_count` rows up to it, and found `problems` (none: the chain
held). Every checkpoint names its chain (its number as text; 'log', the one chain before migration
0027, is chain 0's), and the signature covers the name, so one chain's checkpoint cannot pass for
another's. They are kept in the database (audit_checkpoints), signed with a key derived from the chain
key as the anchors are, so someone with only write access to the database cannot forge or alter one.
They are recorded by the full walk (`socialcard audit verify`, and the `audit.anchor` job once a day:
one per chain, with what was found in it and what was found of the whole log), by the job's onward walk
in between (every 10 minutes, for each chain written since), and by a look at the page that walked
LOOK_RECORDS_AFTER rows or more.

What starting from them finds (`check_onward`, the console's audit page). For each chain it takes the
newest checkpoint that held, is genuine and used today's keyed_from, confirms that row's stored hash is
still the checkpointed one, and walks on to the chain's head:
- a row after the checkpoint edited, deleted or inserted: found, as by a full walk;
- the checkpointed row itself rewritten or deleted: found;
- a row before it edited, deleted or inserted: not seen; the next full walk finds it (`socialcard audit
  verify`, and the `audit.anchor` job once a day), and what the newest full walk found is shown with
  its time, so a break before the checkpoint is not hidden behind it;
- a forged or altered checkpoint: refused, and named;
- checkpoints deleted: the walk starts from an older one, or the chain's first row (slower, not wrong).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from infra import audit
from infra.db import Db

if TYPE_CHECKING:
    from infra.storage import ObjectStorage

LEGACY_NAME = "log"  # the one chain audit_log held before 0027: chain 0
FULL_WALK_EVERY = timedelta(days=1)  # how often the anchor job walks every row, not just the new ones
# A look that walked this many rows onward records where it got to, so the next one starts there: the
# walk a look does stays about this long (a few ms per 1,000 rows) between two runs of the anchor job,
# however busy the log.
LOOK_RECORDS_AFTER = 1_000
_READ = 20  # checkpoints read, newest first, to find a genuine one past forged ones
_FIRST_READ = 2  # per chain at first: the newest is genuine unless someone forged one
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


def chain_name(chain: int) -> str:
    return str(chain)


def _names(chain: int) -> tuple[str, ...]:
    return (chain_name(chain), LEGACY_NAME) if chain == audit.LEGACY_CHAIN else (chain_name(chain),)


def chain_number(name: str) -> int:
    return audit.LEGACY_CHAIN if name == LEGACY_NAME else int(name)


def moved(checkpoint: Checkpoint, stored: bytes | None) -> audit.ChainBreak | None:
    """The break when the checkpointed row's stored hash (None: the row is gone) is not the checkpointed one."""
    when = checkpoint.verified_at.astimezone(UTC).isoformat(timespec="seconds")
    chain = chain_number(checkpoint.chain)
    if stored is None:
        return audit.ChainBreak(checkpoint.last_id, f"it is missing, verified at {when} (deleted)", chain)
    if stored != checkpoint.hash:
        return audit.ChainBreak(
            checkpoint.last_id,
            f"its hash is not the one verified at {when} (the chain was rewritten at or before it)",
            chain,
        )
    return None


# -- the database -------------------------------------------------------------------------------
_COLUMNS = "chain, last_id, hash, row_count, keyed_from, full_walk, problems, verified_at, mac"


async def _read(
    db: Db, chains: Sequence[int], where: str, order: str, limit: int = _READ
) -> dict[int, list[tuple[Checkpoint, bytes]]]:
    """Per chain, its `limit` best checkpoints by `order` (one index probe per name: the table is the
    coordinator's, so the lateral join is plain PostgreSQL on either setup)."""
    names = [n for c in chains for n in _names(c)]
    rows = await db.fetch(
        f"""SELECT c.id, c.{_COLUMNS.replace(", ", ", c.")}
            FROM unnest($1::text[]) AS k (name)
            CROSS JOIN LATERAL (SELECT id, {_COLUMNS} FROM audit_checkpoints
                                WHERE chain = k.name AND {where} ORDER BY {order} LIMIT $2) AS c""",
        names,
        limit,
    )
    by_last = order.startswith("last_id")
    found: dict[int, list[tuple[Checkpoint, bytes]]] = {c: [] for c in chains}
    ranked: dict[int, list[tuple[tuple[object, int], Checkpoint, bytes]]] = {c: [] for c in chains}
    for r in rows:
        checkpoint = Checkpoint(
            r["chain"],
            r["last_id"],
            r["hash"],
            r["row_count"],
            r["keyed_from"],
            r["full_walk"],
            tuple(r["problems"]),
            r["verified_at"],
        )
        rank = (r["last_id"] if by_last else r["verified_at"], r["id"])
        ranked[chain_number(r["chain"])].append((rank, checkpoint, r["mac"]))
    for chain, items in ranked.items():
        # Chain 0's own and its 'log' ones, best first together.
        items.sort(key=lambda item: item[0], reverse=True)  # type: ignore[arg-type, return-value]
        found[chain] = [(c, mac) for _, c, mac in items[:limit]]
    return found


async def record(db: Db, key: bytes, checkpoint: Checkpoint) -> None:
    await record_all(db, key, [checkpoint])


async def record_all(db: Db, key: bytes, checkpoints: Sequence[Checkpoint]) -> None:
    """One statement for a walk's checkpoints, one per chain."""
    if not checkpoints:
        return
    await db.execute(
        f"""INSERT INTO audit_checkpoints ({_COLUMNS})
            SELECT c.chain, c.last_id, c.hash, c.row_count, c.keyed_from, c.full_walk,
                   ARRAY(SELECT jsonb_array_elements_text(c.problems)), c.verified_at, c.mac
            FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bigint[], $6::boolean[],
                        $7::jsonb[], $8::timestamptz[], $9::bytea[])
                 AS c (chain, last_id, hash, row_count, keyed_from, full_walk, problems, verified_at, mac)""",
        [c.chain for c in checkpoints],
        [c.last_id for c in checkpoints],
        [c.hash for c in checkpoints],
        [c.row_count for c in checkpoints],
        [c.keyed_from for c in checkpoints],
        [c.full_walk for c in checkpoints],
        [json.dumps(list(c.problems), ensure_ascii=False) for c in checkpoints],
        [c.verified_at for c in checkpoints],
        [sign(key, c) for c in checkpoints],
    )


@dataclass(frozen=True)
class FullWalk:
    """The newest genuine full walk of each chain, taken together."""

    verified_at: datetime  # the oldest of them
    row_count: int  # rows in the chains, as walked
    chains: int  # chains with one
    problems: tuple[str, ...]  # what any of them found; none: every chain held


async def _genuine(
    db: Db, key: bytes, where: str, order: str, keyed_from: int | None
) -> tuple[dict[int, Checkpoint], list[Refusal]]:
    """Per chain, the first genuine checkpoint by `order` (see first_genuine), and those refused. A few
    per chain first; the chains whose few were all refused, read again further."""
    chains = range(audit.CHAINS)
    found = await _read(db, chains, where, order, _FIRST_READ)
    deeper = [c for c in chains if len(found[c]) == _FIRST_READ and first_genuine(key, found[c], keyed_from)[0] is None]
    if deeper:
        found |= await _read(db, deeper, where, order)
    taken: dict[int, Checkpoint] = {}
    refused: list[Refusal] = []
    for chain in chains:
        checkpoint, passed = first_genuine(key, found[chain], keyed_from)
        refused.extend(passed)
        if checkpoint is not None:
            taken[chain] = checkpoint
    return taken, refused


async def last_full_walks(db: Db, key: bytes) -> tuple[dict[int, Checkpoint], list[Refusal]]:
    """Per chain, its newest genuine full walk, whatever it found; and the forged ones newer than it."""
    return await _genuine(db, key, "full_walk", "verified_at DESC, id DESC", None)


def summary(walks: dict[int, Checkpoint]) -> FullWalk | None:
    if not walks:
        return None
    problems = tuple(dict.fromkeys(p for c in sorted(walks) for p in walks[c].problems))
    return FullWalk(
        min(w.verified_at for w in walks.values()), sum(w.row_count for w in walks.values()), len(walks), problems
    )


async def last_full_walk(db: Db, key: bytes) -> tuple[FullWalk | None, list[Refusal]]:
    """The newest full walk of every chain, together; and the forged ones newer than any."""
    walks, refused = await last_full_walks(db, key)
    return summary(walks), refused


@dataclass(frozen=True)
class ChainOnward:
    """One chain checked from its newest trusted checkpoint to its head."""

    chain: int
    start: Checkpoint | None  # the checkpoint walked on from; None: from the chain's first row
    walked: int  # rows read after it
    first_id: int | None  # the first of them (None: no row after it)
    last: tuple[int, bytes] | None  # the last row read (seq, stored hash), else the checkpoint's; None: empty
    broken: audit.ChainBreak | None

    @property
    def rows(self) -> int:
        """Rows up to the last one read, the checkpoint's included."""
        return (self.start.row_count if self.start else 0) + self.walked


@dataclass(frozen=True)
class OnwardCheck:
    keyed_from: int
    chains: tuple[ChainOnward, ...]  # every chain, by number
    refused: tuple[Refusal, ...]  # forged or rekeyed checkpoints passed over
    full_walk: FullWalk | None  # the newest genuine full walk of every chain

    @property
    def walked(self) -> int:
        return sum(c.walked for c in self.chains)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chains)

    @property
    def breaks(self) -> tuple[audit.ChainBreak, ...]:
        return tuple(c.broken for c in self.chains if c.broken is not None)

    @property
    def broken(self) -> audit.ChainBreak | None:
        return next(iter(self.breaks), None)

    @property
    def started(self) -> int:
        """Chains walked on from a checkpoint."""
        return sum(1 for c in self.chains if c.start is not None)

    @property
    def chains_walked(self) -> int:
        """Chains with a row read."""
        return sum(1 for c in self.chains if c.walked)

    @property
    def oldest_start(self) -> Checkpoint | None:
        starts = [c.start for c in self.chains if c.start is not None]
        return min(starts, key=lambda c: c.verified_at) if starts else None

    def chain(self, number: int) -> ChainOnward:
        return self.chains[number]


def onward_checkpoints(onward: OnwardCheck, at: datetime) -> list[Checkpoint]:
    """The checkpoints an onward walk makes, one per chain it read a row of (or found broken), with the
    break it found there if any."""
    made: list[Checkpoint] = []
    for c in onward.chains:
        if c.last is None or (c.walked == 0 and c.broken is None):
            continue
        broken = (f"row {c.broken.row}: {c.broken.reason}",) if c.broken else ()
        made.append(Checkpoint(chain_name(c.chain), *c.last, c.rows, onward.keyed_from, False, broken, at))
    return made


async def check_onward(db: Db, key: bytes, record_after: int | None = None) -> OnwardCheck:
    """Every chain checked from its newest trusted checkpoint to its head (see the module's docstring).
    With `record_after`, a walk that found every chain whole over at least that many rows in all is
    recorded as checkpoints, one per chain it read."""
    found = await _walk_onward(db, key)
    if record_after is not None and found.broken is None and found.walked >= record_after:
        await record_all(db, key, onward_checkpoints(found, datetime.now(UTC)))
    return found


def _after_sql(chains: int) -> str:
    # One branch per chain, each its own probe of the primary key (on Citus, a single-shard query).
    branch = (
        "(SELECT chain, seq, at, actor, action, subject, details, prev_hash, hash FROM audit_log"
        " WHERE chain = ${c} AND seq > ${s} ORDER BY seq LIMIT ${n})"
    )
    n = 2 * chains + 1
    return " UNION ALL ".join(branch.format(c=2 * i + 1, s=2 * i + 2, n=n) for i in range(chains))


async def _rows_after(db: Db, after: dict[int, int], batch: int = 2000) -> dict[int, list[audit.Row]]:
    """Each chain's rows after its seq in `after`, in one statement for the first `batch` of each;
    a chain with more is read on, alone."""
    if not after:
        return {}
    args: list[object] = [v for c, s in after.items() for v in (c, s)]
    found = await db.fetch(_after_sql(len(after)), *args, batch)
    out: dict[int, list[audit.Row]] = {c: [] for c in after}
    for r in found:
        out[r["chain"]].append(
            (
                r["seq"],
                audit.AuditEntry(r["at"], r["actor"], r["action"], r["subject"], r["details"]),
                r["prev_hash"],
                r["hash"],
            )
        )
    for chain, got in out.items():
        if len(got) == batch:
            got.extend([row async for row in audit.rows(db, chain, got[-1][0])])
    return out


async def _walk_onward(db: Db, key: bytes) -> OnwardCheck:
    keyed_from = await audit.keyed_from(db)
    chains = range(audit.CHAINS)
    starts, refused = await _genuine(db, key, "problems = '{}'", "last_id DESC, id DESC", keyed_from)
    walks, refused_full = await last_full_walks(db, key)
    refusals = tuple(dict.fromkeys((*refused, *refused_full)))  # a forged full walk may show in both reads
    # From each checkpointed row itself (seq >= its seq), so that one statement both confirms its hash
    # and reads on; from the first row where a chain has no checkpoint.
    after = {c: starts[c].last_id - 1 if c in starts else -(2**63) for c in chains}
    result: dict[int, ChainOnward] = {}
    for chain, found in (await _rows_after(db, after)).items():
        start = starts.get(chain)
        if start is not None:
            at_start = found[0][3] if found and found[0][0] == start.last_id else None
            broken = moved(start, at_start)
            if broken is not None:
                result[chain] = ChainOnward(chain, start, 0, None, (start.last_id, start.hash), broken)
                continue
            found = found[1:]
        checker = audit.ChainChecker(key, keyed_from, start.hash if start else audit.GENESIS, chain)
        last = (start.last_id, start.hash) if start else None
        walked = 0
        broken = None
        for row in found:
            walked += 1
            last = (row[0], row[3])
            broken = checker.check(*row)
            if broken is not None:
                break
        result[chain] = ChainOnward(chain, start, walked, found[0][0] if found else None, last, broken)
    return OnwardCheck(keyed_from, tuple(result[c] for c in chains), refusals, summary(walks))


def full_walk_checkpoints(found: audit.Verification, at: datetime) -> list[Checkpoint]:
    """A full walk's checkpoints: one per chain that has a row or a problem, with what was found in it
    and what was found of the whole log (anchors that are not genuine, stray rows)."""
    made: list[Checkpoint] = []
    for c in found.chains:
        broken = (f"row {c.broken.row}: {c.broken.reason}",) if c.broken else ()
        if c.last is None and not (broken or c.findings):
            continue  # an empty chain nothing was found of (the whole log's findings go with the others)
        problems = (*broken, *c.findings, *found.problems)
        seq, digest = c.last if c.last is not None else (0, audit.GENESIS)
        made.append(Checkpoint(chain_name(c.chain), seq, digest, c.rows, found.keyed_from, True, problems, at))
    return made


async def full_walk(
    db: Db, storage: ObjectStorage, key: bytes, anchors: int | None = audit.DEFAULT_ANCHORS_CHECKED
) -> tuple[audit.Verification, list[Checkpoint]]:
    """Every chain, each compared with its head in the `anchors` newest anchors
    (audit.verify_with_anchors), recorded as checkpoints with what it found; none when the log is empty."""
    found = await audit.verify_with_anchors(db, storage, key, anchors)
    checkpoints = full_walk_checkpoints(found, datetime.now(UTC))
    await record_all(db, key, checkpoints)
    return found, checkpoints


async def advance(db: Db, storage: ObjectStorage, key: bytes) -> list[Checkpoint]:
    """The anchor job's walk: a full one when the last is FULL_WALK_EVERY old (or there is none), else
    onward from each chain's newest trusted checkpoint; recorded as checkpoints (with what it found),
    one per chain written since."""
    now = datetime.now(UTC)
    full, _ = await last_full_walk(db, key)
    if full is None or now - full.verified_at >= FULL_WALK_EVERY:
        return (await full_walk(db, storage, key))[1]
    checkpoints = onward_checkpoints(await check_onward(db, key), now)
    await record_all(db, key, checkpoints)
    return checkpoints
