"""The append-only, hash-chained audit log, keyed and anchored outside the database: CHAINS independent
chains, each with its own head, and one signed record of every head.

Each row's hash is HMAC-SHA256, under AUDIT_CHAIN_KEY, of the previous row's hash in its chain and the
row's canonical form, so an edited, deleted or inserted row breaks its chain at that point. A row is
named by its chain and its place in it (`chain/seq`, `audit_log`'s key). An entry goes to the chain of
its subject (`chain_of`): a stable hash of the subject modulo CHAINS, so one person's history
(`person:<id>`) is one chain, verified alone. Writers serialise per chain, on that chain's row in
`audit_heads` (locked FOR UPDATE until they commit), so each chain is a total order and writers to
different chains do not wait for each other; on Citus the log and the heads are distributed by chain
and co-located, so the lock and the append are on one shard. (A row lock, not an advisory lock: an
advisory lock holds only on the node that took it.)

Why a key: with a plain hash, whoever owns the database can edit a row and recompute every later
hash, and the chain checks out. The key lives only in the application's environment, never in the
database, so the database owner cannot recompute a single keyed hash.

Why anchors: a key does not help against removing rows at the tail of a chain (or all of them): what
is left is still a valid chain. The scheduled job `audit.anchor` writes one record of every chain's
head (its last seq, its hash, its row count), with the time, signed with a key derived from
AUDIT_CHAIN_KEY, to the object store under `audit-anchors/`: the log's global head. `socialcard audit
verify` walks each chain on its own and compares it with that chain's head in the newest anchors, so
rows missing below an anchored seq, or a different hash at one, are found in the chain they were cut
from. Rows written after the newest anchor can still be removed unnoticed: the schedule's interval is
that window.

Rows written before migration 0027 are chain 0, with their old id as seq. Rows written before the key
existed (migration 0009) keep the plain SHA-256 form they were written in; `audit_chain.keyed_from`
says from which seq of chain 0 on rows are keyed (every other chain is keyed throughout). See
`ChainChecker` for what that boundary does and does not protect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from infra.db import Db, UnitOfWork

if TYPE_CHECKING:
    from infra.storage import ObjectStorage

GENESIS = b"\x00" * 32
# The number of chains, fixed at migration 0027 (which records it in audit_chain.chains and makes a head
# for each): Citus's default shard count, so that on a cluster each chain can have a shard of its own.
# Changing it moves subjects between chains; it is not a setting.
CHAINS = 32
LEGACY_CHAIN = 0  # the rows written before 0027, with their id as seq
ALL_KEYED = -(2**63)  # a keyed_from below every seq: no row may be in the unkeyed form
_MAX_ID = 2**63 - 1
ANCHOR_PREFIX = "audit-anchors/"
ANCHOR_JOB = "audit.anchor"
# Anchors `audit verify` reads by default: the highest-anchored ones. The newest alone finds a cut
# tail; a few more keep it found when the newest anchors themselves were deleted from the store.
DEFAULT_ANCHORS_CHECKED = 50
# Chains walked at once by a full walk: on a cluster their shards answer in parallel; on one node the
# walk is bound by the HMACs in this process, and a few at once only overlap reading with hashing.
WALKERS = 4


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]


def chain_of(subject: str) -> int:
    """The chain an entry about `subject` goes to: the same in every process and release (not Python's
    hash()), so one subject's entries, one person's (`person:<id>`) among them, are one chain."""
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big") % CHAINS


def row_name(chain: int, seq: int) -> str:
    """How a row is named to people: its chain and its place in it."""
    return f"{chain}/{seq}"


def _body(details: Mapping[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(entry: AuditEntry, body: str | None = None) -> bytes:
    """`body`: the details as _body gives them, when the caller has them already."""
    body = _body(entry.details) if body is None else body
    return "\x1f".join((entry.at.isoformat(), entry.actor, entry.action, entry.subject, body)).encode()


def legacy_chain_hash(prev_hash: bytes, entry: AuditEntry) -> bytes:
    """The unkeyed form rows had before migration 0009 (anyone can compute it)."""
    return hashlib.sha256(prev_hash + canonical(entry)).digest()


def chain_hash(key: bytes, prev_hash: bytes, entry: AuditEntry, body: str | None = None) -> bytes:
    # prev_hash is always 32 bytes, so prev_hash || canonical is unambiguous. The chain and seq are not
    # hashed: a row moved to another place breaks the chain it left and the one it joined.
    return hmac.new(key, prev_hash + canonical(entry, body), hashlib.sha256).digest()


@dataclass(frozen=True)
class ChainBreak:
    row_id: int  # the row's seq in its chain
    reason: str
    chain: int = LEGACY_CHAIN

    @property
    def row(self) -> str:
        return row_name(self.chain, self.row_id)


class ChainChecker:
    """Fed one chain's rows in seq order, names the first whose stored hashes disagree with the chain.

    Rows of chain 0 with a seq below `keyed_from` are checked in the legacy SHA-256 form, the others
    keyed. The legacy prefix is still covered once a keyed row follows it: rewriting it changes the last
    legacy hash, which the first keyed row's HMAC binds. What the key cannot stop is the owner raising
    `keyed_from` past the head and rewriting chain 0 in the legacy form; the anchors record
    `keyed_from`, so `compare_with_anchors` finds that.
    """

    def __init__(
        self, key: bytes, keyed_from: int = ALL_KEYED, prev: bytes = GENESIS, chain: int = LEGACY_CHAIN
    ) -> None:
        """`prev`: the hash of the row before the first one fed (a checkpoint's), GENESIS from the first row."""
        self._key = key
        self._keyed_from = keyed_from if chain == LEGACY_CHAIN else ALL_KEYED
        self._expected_prev = prev
        self._chain = chain
        self.legacy_rows = 0

    def check(self, row_id: int, entry: AuditEntry, prev_hash: bytes, stored_hash: bytes) -> ChainBreak | None:
        if prev_hash != self._expected_prev:
            return ChainBreak(
                row_id, "does not follow the previous row (a row was deleted or inserted before it)", self._chain
            )
        if row_id < self._keyed_from:
            if legacy_chain_hash(prev_hash, entry) != stored_hash:
                return ChainBreak(row_id, "its content does not match its hash (edited)", self._chain)
            self.legacy_rows += 1
        elif not hmac.compare_digest(chain_hash(self._key, prev_hash, entry), stored_hash):
            return ChainBreak(
                row_id,
                "its content does not match its keyed hash (edited, or rehashed without the chain key)",
                self._chain,
            )
        self._expected_prev = stored_hash
        return None


# -- anchors: the global head -------------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    """One chain's head: its last row's seq and stored hash, and the rows up to it."""

    chain: int
    seq: int
    hash: bytes
    count: int


@dataclass(frozen=True)
class Anchor:
    """Every chain's head at one moment, as signed into the object store. An anchor written before
    0027 (version 1) holds the one chain there was, which is chain 0."""

    heads: tuple[Head, ...]  # by chain; chains with no row yet are left out
    keyed_from: int
    chains: int  # CHAINS when it was written
    at: datetime
    version: int = 2

    def head(self, chain: int) -> Head | None:
        return next((h for h in self.heads if h.chain == chain), None)

    @property
    def position(self) -> int:
        """The sum of the heads' seqs: grows with every row written, whatever its chain."""
        return sum(h.seq for h in self.heads)

    @property
    def count(self) -> int:
        return sum(h.count for h in self.heads)


class AnchorError(Exception):
    """An object under the anchor prefix is not an anchor this key signed."""


class _AnchorBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    last_id: int
    hash: str
    count: int
    keyed_from: int
    at: datetime


class _SealedAnchor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    last_id: int
    hash: str
    count: int
    keyed_from: int
    at: datetime
    mac: str


class _HeadsBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    heads: tuple[tuple[int, int, str, int], ...]  # (chain, seq, hash, count)
    keyed_from: int
    chains: int
    at: datetime


class _SealedHeads(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    heads: tuple[tuple[int, int, str, int], ...]
    keyed_from: int
    chains: int
    at: datetime
    mac: str


class _Version(msgspec.Struct):
    v: int


def _anchor_key(key: bytes) -> bytes:
    # Its own key, derived with a label, so a row hash can never pass for an anchor's signature.
    return hmac.new(key, b"socialcard audit anchor v1", hashlib.sha256).digest()


def _anchor_mac(key: bytes, body: _AnchorBody | _HeadsBody) -> str:
    # The body holds its version, so a version 1 body cannot pass for a version 2 one.
    return hmac.new(_anchor_key(key), msgspec.json.encode(body), hashlib.sha256).hexdigest()


def seal_anchor(key: bytes, anchor: Anchor) -> bytes:
    if anchor.version == 1:
        (head,) = anchor.heads
        old = _AnchorBody(1, head.seq, head.hash.hex(), head.count, anchor.keyed_from, anchor.at)
        return msgspec.json.encode(_SealedAnchor(**msgspec.structs.asdict(old), mac=_anchor_mac(key, old)))
    heads = tuple((h.chain, h.seq, h.hash.hex(), h.count) for h in sorted(anchor.heads, key=lambda h: h.chain))
    body = _HeadsBody(2, heads, anchor.keyed_from, anchor.chains, anchor.at)
    return msgspec.json.encode(_SealedHeads(**msgspec.structs.asdict(body), mac=_anchor_mac(key, body)))


def open_anchor(key: bytes, data: bytes) -> Anchor:
    """The anchor in `data`; AnchorError when it is malformed or not signed with this key."""
    try:
        version = msgspec.json.decode(data, type=_Version).v
        if version == 1:
            old = msgspec.json.decode(data, type=_SealedAnchor)
            fields = msgspec.structs.asdict(old)
            mac = fields.pop("mac")
            body: _AnchorBody | _HeadsBody = _AnchorBody(**fields)
            heads: tuple[Head, ...] = (Head(LEGACY_CHAIN, old.last_id, bytes.fromhex(old.hash), old.count),)
            keyed, chains, at = old.keyed_from, 1, old.at
        elif version == 2:
            new = msgspec.json.decode(data, type=_SealedHeads)
            fields = msgspec.structs.asdict(new)
            mac = fields.pop("mac")
            body = _HeadsBody(**fields)
            heads = tuple(Head(c, seq, bytes.fromhex(h), n) for c, seq, h, n in new.heads)
            keyed, chains, at = new.keyed_from, new.chains, new.at
        else:
            raise AnchorError(f"not an anchor (version {version})")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise AnchorError(f"not an anchor ({exc})") from None
    if not hmac.compare_digest(mac, _anchor_mac(key, body)):
        raise AnchorError("its signature does not match (forged, altered, or signed with another key)")
    return Anchor(heads, keyed, chains, at, version)


def anchor_name(anchor: Anchor) -> str:
    # Named by its position counted down from the largest bigint: S3 lists keys in ascending order, so
    # the first page holds the newest heads and verify need not list the whole history. (Chain 0 starts
    # at the last id before 0027, so a version 2 anchor lists before every version 1 one.) The time
    # keeps two anchors of one position (a log restored from a backup and written on) side by side.
    return f"{ANCHOR_PREFIX}{_MAX_ID - anchor.position:019d}-{anchor.at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}.json"


def _when(anchor: Anchor) -> str:
    return anchor.at.astimezone(UTC).isoformat(timespec="seconds")


class AnchorComparison:
    """Fed one chain's rows in seq order (seq and stored hash), says where it disagrees with that
    chain's head in the anchors."""

    def __init__(self, anchors: Sequence[Anchor], keyed_from: int, chain: int = LEGACY_CHAIN) -> None:
        self.anchors = anchors
        self.keyed_from = keyed_from
        self.chain = chain
        self._heads = [(a, h) for a in anchors if (h := a.head(chain)) is not None and h.count > 0]
        self._anchored = {h.seq for _, h in self._heads}
        self._at: dict[int, tuple[bytes, int]] = {}  # anchored seq -> its stored hash, rows up to it
        self._rows = 0
        self._last: int | None = None

    def see(self, row_id: int, stored_hash: bytes) -> None:
        self._rows += 1
        self._last = row_id
        if row_id in self._anchored:
            self._at[row_id] = (stored_hash, self._rows)

    def _row(self, seq: int) -> str:
        return row_name(self.chain, seq)

    def findings(self) -> list[str]:
        """One line per kind of disagreement, naming the lowest anchored row it shows at (the
        highest for a cut tail), and how many anchors agree on it. `rekeyed` is the whole log's, so
        chain 0's comparison says it."""
        cut: list[tuple[Anchor, Head]] = []
        missing: list[tuple[Anchor, Head]] = []
        rewritten: list[tuple[Anchor, Head]] = []
        miscounted: list[tuple[Anchor, Head, int]] = []
        rekeyed = [a for a in self.anchors if a.keyed_from != self.keyed_from] if self.chain == LEGACY_CHAIN else []
        for anchor, head in sorted(self._heads, key=lambda ah: ah[1].seq):
            seen = self._at.get(head.seq)
            if seen is None:
                if self._last is None or head.seq > self._last:
                    cut.append((anchor, head))
                else:
                    missing.append((anchor, head))
            elif seen[0] != head.hash:
                rewritten.append((anchor, head))
            elif seen[1] != head.count:
                miscounted.append((anchor, head, seen[1]))
        found: list[str] = []
        if cut:
            top, head = cut[-1]
            ends = "is empty" if self._last is None else f"ends at row {self._row(self._last)}"
            found.append(
                f"rows deleted from the tail or the table truncated: chain {self.chain} {ends} ({self._rows} "
                f"row(s)), but the anchor of {_when(top)} recorded {head.count} row(s) up to row "
                f"{self._row(head.seq)}" + _also(len(cut))
            )
        if missing:
            first, head = missing[0]
            found.append(
                f"row {self._row(head.seq)}, anchored at {_when(first)}, is missing (deleted)" + _also(len(missing))
            )
        if rewritten:
            first, head = rewritten[0]
            found.append(
                f"row {self._row(head.seq)} has a different hash from the one anchored at {_when(first)}: "
                f"chain {self.chain} was rewritten at or before it" + _also(len(rewritten))
            )
        if miscounted:
            first, head, rows = miscounted[0]
            found.append(
                f"{rows} row(s) up to row {self._row(head.seq)}, but the anchor of {_when(first)} counted "
                f"{head.count}" + _also(len(miscounted))
            )
        if rekeyed:
            first = rekeyed[0]
            found.append(
                f"the database says rows are keyed from seq {self.keyed_from} of chain 0, the anchor of "
                f"{_when(first)} says from {first.keyed_from}: the boundary was moved" + _also(len(rekeyed))
            )
        return found


def _also(anchors: int) -> str:
    return f" ({anchors} anchors show it)" if anchors > 1 else ""


# -- the process's key --------------------------------------------------------------------------
class _Key:
    # One process, one key: the 30-odd writers call record(uow, ...) with no settings at hand, so the
    # composition root (app.services) sets it once. Unset, record refuses rather than write a row
    # nobody could verify.
    value: bytes | None = None


def use_key(key: bytes) -> None:
    """Set the chain key record() and verify() use in this process (from AUDIT_CHAIN_KEY)."""
    if len(key) != 32:
        raise ValueError("the audit chain key must be 32 bytes")
    _Key.value = key


def _key() -> bytes:
    if _Key.value is None:
        raise RuntimeError("the audit chain key is not set: build the services (app.services) first")
    return _Key.value


# -- the database -------------------------------------------------------------------------------
async def record(
    uow: UnitOfWork, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
) -> None:
    """Append one entry in the caller's transaction (it lands only if the business change does)."""
    await record_many(uow, actor, action, [(subject, details or {})])


async def record_many(
    uow: UnitOfWork, actor: str, action: str, entries: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """Append one entry per (subject, details), in order within each chain, in the caller's
    transaction: per chain one head lock and one statement for the chain's share of the batch (the
    silent pass audits every person it confirms).

    Chains are locked in ascending order, so two batches cannot deadlock on each other. A transaction
    that calls record twice holds the first call's chain while it waits for the second's: keep a
    transaction's entries in one call where they may go to several chains."""
    if not entries:
        return
    key = _key()
    at = datetime.now(UTC)
    by_chain: dict[int, list[tuple[str, Mapping[str, Any]]]] = {}
    for subject, details in entries:
        by_chain.setdefault(chain_of(subject), []).append((subject, details))
    for chain in sorted(by_chain):
        # Single-shard on Citus (the heads are distributed by chain), so FOR UPDATE is allowed there.
        head = await uow.fetchrow("SELECT seq, hash FROM audit_heads WHERE chain = $1 FOR UPDATE", chain)
        if head is None:
            raise RuntimeError(f"audit chain {chain} has no head: the migrations are not applied (0027)")
        seq: int = head["seq"]
        prev: bytes = head["hash"]
        seqs: list[int] = []
        subjects: list[str] = []
        bodies: list[str] = []
        prevs: list[bytes] = []
        hashes: list[bytes] = []
        for subject, details in by_chain[chain]:
            body = _body(details)  # once, for the hash and the row
            digest = chain_hash(key, prev, AuditEntry(at, actor, action, subject, details), body)
            seq += 1
            seqs.append(seq)
            subjects.append(subject)
            bodies.append(body)
            prevs.append(prev)
            hashes.append(digest)
            prev = digest
        await uow.execute(
            """INSERT INTO audit_log (chain, seq, at, actor, action, subject, details, prev_hash, hash)
               SELECT $1, e.seq, $2, $3, $4, e.subject, e.details::jsonb, e.prev_hash, e.hash
               FROM unnest($5::bigint[], $6::text[], $7::text[], $8::bytea[], $9::bytea[])
                    AS e (seq, subject, details, prev_hash, hash)""",
            chain,
            at,
            actor,
            action,
            seqs,
            subjects,
            bodies,
            prevs,
            hashes,
        )
        await uow.execute(
            "UPDATE audit_heads SET seq = $2, hash = $3, row_count = row_count + $4 WHERE chain = $1",
            chain,
            seq,
            prev,
            len(seqs),
        )


async def keyed_from(db: Db) -> int:
    """The first seq of chain 0 hashed with the key (migration 0009 recorded it, as an id)."""
    value = await db.fetchval("SELECT keyed_from FROM audit_chain")
    # Gone only if someone got past its trigger. Then no row counts as legacy: unkeyed rows show up
    # as breaks instead of being taken in the form anyone can compute.
    return ALL_KEYED if value is None else int(value)


async def recorded_chains(db: Db) -> int | None:
    """The number of chains migration 0027 recorded (None: the row is gone)."""
    value = await db.fetchval("SELECT chains FROM audit_chain")
    return None if value is None else int(value)


Row = tuple[int, AuditEntry, bytes, bytes]  # seq, entry, prev_hash, stored hash: as ChainChecker.check takes them


async def rows(db: Db, chain: int, after: int = -(2**63), batch: int = 5000) -> AsyncIterator[Row]:
    """The rows of `chain` with a seq above `after` (by default every row, whatever seq an intruder gave
    it), in seq order. One shard's index, a batch at a time."""
    last = after
    while True:
        found = await db.fetch(
            """SELECT seq, at, actor, action, subject, details, prev_hash, hash
               FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3""",
            chain,
            last,
            batch,
        )
        for r in found:
            yield (
                r["seq"],
                AuditEntry(r["at"], r["actor"], r["action"], r["subject"], r["details"]),
                r["prev_hash"],
                r["hash"],
            )
        if len(found) < batch:
            return
        last = found[-1]["seq"]


async def strays(db: Db) -> list[str]:
    """Rows in a chain that is not one of the CHAINS (an intruder's: no writer puts one there)."""
    found = await db.fetch(
        """SELECT chain, count(*) AS n, min(seq) AS first FROM audit_log
           WHERE chain < 0 OR chain >= $1 GROUP BY chain ORDER BY chain""",
        CHAINS,
    )
    return [
        f"{r['n']} row(s) in chain {r['chain']}, which is not one of the {CHAINS} (inserted), from row "
        f"{row_name(r['chain'], r['first'])}"
        for r in found
    ]


@dataclass(frozen=True)
class ChainWalk:
    """One chain walked from its first row (or from a checkpoint) to its head."""

    chain: int
    rows: int  # rows read (up to the break when no anchors were compared)
    legacy_rows: int
    broken: ChainBreak | None
    last: tuple[int, bytes] | None  # the last row read (seq, stored hash); None: the chain is empty
    findings: tuple[str, ...]  # disagreements with the anchors' head for this chain


@dataclass(frozen=True)
class Verification:
    keyed_from: int
    chains: tuple[ChainWalk, ...]  # every chain, by number
    anchors: tuple[Anchor, ...]  # the anchors compared, newest first
    problems: tuple[str, ...]  # not of one chain: anchors that are not genuine, stray rows, the chain count

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chains)

    @property
    def legacy_rows(self) -> int:
        return sum(c.legacy_rows for c in self.chains)

    @property
    def breaks(self) -> tuple[ChainBreak, ...]:
        return tuple(c.broken for c in self.chains if c.broken is not None)

    @property
    def broken(self) -> ChainBreak | None:
        """The first break, in the lowest chain that has one."""
        return next(iter(self.breaks), None)

    @property
    def findings(self) -> tuple[str, ...]:
        return (*self.problems, *(f for c in self.chains for f in c.findings))

    @property
    def intact(self) -> bool:
        return not self.breaks and not self.findings


async def walk_chain(
    db: Db, key: bytes, chain: int, keyed_from: int, anchors: Sequence[Anchor] = (), stop_at_break: bool = True
) -> ChainWalk:
    """Every row of one chain with the key, compared with that chain's head in `anchors`."""
    checker = ChainChecker(key, keyed_from, chain=chain)
    comparison = AnchorComparison(anchors, keyed_from, chain)
    count = 0
    broken: ChainBreak | None = None
    last: tuple[int, bytes] | None = None
    async for row in rows(db, chain):
        count += 1
        last = (row[0], row[3])
        comparison.see(row[0], row[3])
        if broken is None:
            broken = checker.check(*row)
            if broken is not None and stop_at_break and not comparison.anchors:
                break  # nothing left to learn from the rest
    return ChainWalk(chain, count, checker.legacy_rows, broken, last, tuple(comparison.findings()))


async def _check(db: Db, key: bytes, anchors: Sequence[Anchor], problems: Sequence[str]) -> Verification:
    start = await keyed_from(db)
    recorded = await recorded_chains(db)
    found = [*problems, *await strays(db)]
    if recorded != CHAINS:
        found.append(f"the database records {recorded} audit chains, this release writes {CHAINS}")
    # Each chain on its own: from a pool, WALKERS at a time, each on a connection of its own.
    if isinstance(db, asyncpg.Pool):
        gate = asyncio.Semaphore(WALKERS)

        async def one(chain: int) -> ChainWalk:
            async with gate:
                return await walk_chain(db, key, chain, start, anchors)

        walks = await asyncio.gather(*(one(c) for c in range(CHAINS)))
    else:
        walks = [await walk_chain(db, key, c, start, anchors) for c in range(CHAINS)]
    return Verification(start, tuple(walks), tuple(anchors), tuple(found))


async def verify(db: Db) -> tuple[int, ChainBreak | None]:
    """Walk every chain with this process's key; return the rows read and the first break, if any.
    (The anchors are not read: see verify_with_anchors.)"""
    found = await _check(db, _key(), (), ())
    return found.rows, found.broken


async def read_anchors(storage: ObjectStorage, key: bytes, limit: int | None) -> tuple[list[Anchor], list[str]]:
    """The `limit` newest anchors (None: all) and a line for each object that is not a genuine one."""
    names = await asyncio.to_thread(storage.keys, ANCHOR_PREFIX, limit)
    anchors: list[Anchor] = []
    problems: list[str] = []
    for name in names:
        try:
            anchor = open_anchor(key, await asyncio.to_thread(storage.get_bytes, name))
        except AnchorError as exc:
            problems.append(f"anchor {name}: {exc}")
            continue
        if anchor_name(anchor) != name:
            # Renamed to sort lower (as if it anchored an earlier head), it would drop off the page read.
            problems.append(f"anchor {name}: its name is not the one written for it (moved)")
            continue
        anchors.append(anchor)
    return anchors, problems


async def verify_with_anchors(
    db: Db, storage: ObjectStorage, key: bytes, anchors: int | None = DEFAULT_ANCHORS_CHECKED
) -> Verification:
    """Every chain with the key, each compared with its head in the `anchors` newest anchors (None: all)."""
    found, problems = await read_anchors(storage, key, anchors)
    return await _check(db, key, found, problems)


async def heads(db: Db) -> list[Head]:
    """Every chain's head, from audit_heads (the writers' own record of where each chain ends)."""
    return [
        Head(r["chain"], r["seq"], r["hash"], r["row_count"])
        for r in await db.fetch("SELECT chain, seq, hash, row_count FROM audit_heads ORDER BY chain")
    ]


async def write_anchor(db: Db, storage: ObjectStorage, key: bytes) -> Anchor | None:
    """Sign every chain's head into the object store, as one record: the global head. None when the
    log is empty or the newest anchor already holds these heads.

    The embedded S3 server has no object lock, so whoever holds the store's credentials can delete
    anchors (not forge them: they are signed). In production give `audit-anchors/` a bucket with Object
    Lock in compliance mode, or replicate it to one the database owner cannot reach.
    """
    # Each head is its chain's row in audit_heads, written in the same transaction as the chain's rows,
    # so each is a whole chain as committed. On Citus one read of every shard is not one snapshot: the
    # heads are of slightly different moments, each one true of its chain, which is all verify compares.
    now = [h for h in await heads(db) if h.count > 0]
    if not now:
        return None  # nothing to lose yet
    newest, _ = await read_anchors(storage, key, 1)
    if newest and newest[0].version == 2 and set(newest[0].heads) == set(now):
        return None
    anchor = Anchor(tuple(now), await keyed_from(db), CHAINS, datetime.now(UTC))
    await asyncio.to_thread(storage.put_bytes, anchor_name(anchor), seal_anchor(key, anchor), "application/json")
    return anchor
