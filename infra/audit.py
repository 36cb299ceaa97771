"""The append-only, hash-chained audit log, keyed and anchored outside the database.

Each row's hash is HMAC-SHA256, under AUDIT_CHAIN_KEY, of the previous row's hash and the row's
canonical form, so an edited, deleted or inserted row breaks the chain at that point. Writers
serialise on an advisory lock held until their transaction commits, so the chain is a total order.

Why a key: with a plain hash, whoever owns the database can edit a row and recompute every later
hash, and the chain checks out. The key lives only in the application's environment, never in the
database, so the database owner cannot recompute a single keyed hash.

Why anchors: a key does not help against removing rows at the tail (or all of them): what is left
is still a valid chain. The scheduled job `audit.anchor` writes the chain's head (last id, its hash,
the row count, the time), signed with a key derived from AUDIT_CHAIN_KEY, to the object store under
`audit-anchors/`; `socialcard audit verify` compares the log with the newest anchors, so rows missing
below an anchored id, or a different hash at one, are found. Rows written after the newest anchor
can still be removed unnoticed: the schedule's interval is that window.

Rows written before the key existed (migration 0009) keep the plain SHA-256 form they were written
in; `audit_chain.keyed_from` says from which id on rows are keyed. See `ChainChecker` for what that
boundary does and does not protect.
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

import msgspec

from infra.db import Db, UnitOfWork

if TYPE_CHECKING:
    from infra.storage import ObjectStorage

GENESIS = b"\x00" * 32
_CHAIN_LOCK = 0x4A0D17  # advisory lock key for the audit chain
ALL_KEYED = -(2**63)  # a keyed_from below every id: no row may be in the unkeyed form
_MAX_ID = 2**63 - 1
ANCHOR_PREFIX = "audit-anchors/"
ANCHOR_JOB = "audit.anchor"
# Anchors `audit verify` reads by default: the highest-anchored ones. The newest alone finds a cut
# tail; a few more keep it found when the newest anchors themselves were deleted from the store.
DEFAULT_ANCHORS_CHECKED = 50


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]


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
    # prev_hash is always 32 bytes, so prev_hash || canonical is unambiguous.
    return hmac.new(key, prev_hash + canonical(entry, body), hashlib.sha256).digest()


@dataclass(frozen=True)
class ChainBreak:
    row_id: int
    reason: str


class ChainChecker:
    """Fed the rows in id order, names the first whose stored hashes disagree with the chain.

    Rows with an id below `keyed_from` are checked in the legacy SHA-256 form, the others keyed. The
    legacy prefix is still covered once a keyed row follows it: rewriting it changes the last legacy
    hash, which the first keyed row's HMAC binds. What the key cannot stop is the owner raising
    `keyed_from` past the head and rewriting everything in the legacy form; the anchors record
    `keyed_from`, so `compare_with_anchors` finds that.
    """

    def __init__(self, key: bytes, keyed_from: int = ALL_KEYED, prev: bytes = GENESIS) -> None:
        """`prev`: the hash of the row before the first one fed (a checkpoint's), GENESIS from the first row."""
        self._key = key
        self._keyed_from = keyed_from
        self._expected_prev = prev
        self.legacy_rows = 0

    def check(self, row_id: int, entry: AuditEntry, prev_hash: bytes, stored_hash: bytes) -> ChainBreak | None:
        if prev_hash != self._expected_prev:
            return ChainBreak(row_id, "does not follow the previous row (a row was deleted or inserted before it)")
        if row_id < self._keyed_from:
            if legacy_chain_hash(prev_hash, entry) != stored_hash:
                return ChainBreak(row_id, "its content does not match its hash (edited)")
            self.legacy_rows += 1
        elif not hmac.compare_digest(chain_hash(self._key, prev_hash, entry), stored_hash):
            return ChainBreak(
                row_id, "its content does not match its keyed hash (edited, or rehashed without the chain key)"
            )
        self._expected_prev = stored_hash
        return None


# -- anchors ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    """The chain's head at one moment, as signed into the object store."""

    last_id: int
    hash: bytes
    count: int  # rows with an id up to last_id
    keyed_from: int
    at: datetime


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


def _anchor_key(key: bytes) -> bytes:
    # Its own key, derived with a label, so a row hash can never pass for an anchor's signature.
    return hmac.new(key, b"socialcard audit anchor v1", hashlib.sha256).digest()


def _anchor_mac(key: bytes, body: _AnchorBody) -> str:
    return hmac.new(_anchor_key(key), msgspec.json.encode(body), hashlib.sha256).hexdigest()


def seal_anchor(key: bytes, anchor: Anchor) -> bytes:
    body = _AnchorBody(1, anchor.last_id, anchor.hash.hex(), anchor.count, anchor.keyed_from, anchor.at)
    sealed = _SealedAnchor(**msgspec.structs.asdict(body), mac=_anchor_mac(key, body))
    return msgspec.json.encode(sealed)


def open_anchor(key: bytes, data: bytes) -> Anchor:
    """The anchor in `data`; AnchorError when it is malformed or not signed with this key."""
    try:
        sealed = msgspec.json.decode(data, type=_SealedAnchor)
        digest = bytes.fromhex(sealed.hash)
    except (msgspec.DecodeError, ValueError) as exc:
        raise AnchorError(f"not an anchor ({exc})") from None
    fields = msgspec.structs.asdict(sealed)
    mac = fields.pop("mac")
    if sealed.v != 1 or not hmac.compare_digest(mac, _anchor_mac(key, _AnchorBody(**fields))):
        raise AnchorError("its signature does not match (forged, altered, or signed with another key)")
    return Anchor(sealed.last_id, digest, sealed.count, sealed.keyed_from, sealed.at)


def anchor_name(anchor: Anchor) -> str:
    # Named by the id counted down from the largest bigint: S3 lists keys in ascending order, so the
    # first page holds the highest anchored rows and verify need not list the whole history. The time
    # keeps two anchors of one id (a log restored from a backup and written on) side by side.
    return f"{ANCHOR_PREFIX}{_MAX_ID - anchor.last_id:019d}-{anchor.at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}.json"


def _when(anchor: Anchor) -> str:
    return anchor.at.astimezone(UTC).isoformat(timespec="seconds")


class AnchorComparison:
    """Fed the log's rows in id order (id and stored hash), says where it disagrees with the anchors."""

    def __init__(self, anchors: Sequence[Anchor], keyed_from: int) -> None:
        self.anchors = anchors
        self.keyed_from = keyed_from
        self._anchored_ids = {a.last_id for a in anchors}
        self._at: dict[int, tuple[bytes, int]] = {}  # anchored id -> its stored hash, rows up to it
        self._rows = 0
        self._last_id: int | None = None

    def see(self, row_id: int, stored_hash: bytes) -> None:
        self._rows += 1
        self._last_id = row_id
        if row_id in self._anchored_ids:
            self._at[row_id] = (stored_hash, self._rows)

    def findings(self) -> list[str]:
        """One line per kind of disagreement, naming the lowest anchored row it shows at (the
        highest for a cut tail), and how many anchors agree on it."""
        cut: list[Anchor] = []
        missing: list[Anchor] = []
        rewritten: list[Anchor] = []
        miscounted: list[tuple[Anchor, int]] = []
        rekeyed = [a for a in self.anchors if a.keyed_from != self.keyed_from]
        for anchor in sorted(self.anchors, key=lambda a: a.last_id):
            seen = self._at.get(anchor.last_id)
            if seen is None:
                if self._last_id is None or anchor.last_id > self._last_id:
                    cut.append(anchor)
                else:
                    missing.append(anchor)
            elif seen[0] != anchor.hash:
                rewritten.append(anchor)
            elif seen[1] != anchor.count:
                miscounted.append((anchor, seen[1]))
        found: list[str] = []
        if cut:
            top = cut[-1]
            ends = "is empty" if self._last_id is None else f"ends at row {self._last_id}"
            found.append(
                f"rows deleted from the tail or the table truncated: the log {ends} ({self._rows} row(s)), "
                f"but the anchor of {_when(top)} recorded {top.count} row(s) up to row {top.last_id}" + _also(len(cut))
            )
        if missing:
            first = missing[0]
            found.append(f"row {first.last_id}, anchored at {_when(first)}, is missing (deleted)" + _also(len(missing)))
        if rewritten:
            first = rewritten[0]
            found.append(
                f"row {first.last_id} has a different hash from the one anchored at {_when(first)}: "
                "the chain was rewritten at or before it" + _also(len(rewritten))
            )
        if miscounted:
            first, rows = miscounted[0]
            found.append(
                f"{rows} row(s) up to row {first.last_id}, but the anchor of {_when(first)} counted {first.count}"
                + _also(len(miscounted))
            )
        if rekeyed:
            first = rekeyed[0]
            found.append(
                f"the database says rows are keyed from id {self.keyed_from}, the anchor of {_when(first)} says "
                f"from id {first.keyed_from}: the boundary was moved" + _also(len(rekeyed))
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
    """Append one entry per (subject, details), in order, in the caller's transaction: one chain lock
    and one statement for a whole batch (the silent pass audits every person it confirms)."""
    if not entries:
        return
    key = _key()
    at = datetime.now(UTC)
    await uow.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK)
    prev = await uow.fetchval("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1") or GENESIS
    subjects: list[str] = []
    bodies: list[str] = []
    prevs: list[bytes] = []
    hashes: list[bytes] = []
    for subject, details in entries:
        entry = AuditEntry(at, actor, action, subject, details)
        body = _body(details)  # once, for the hash and the row
        digest = chain_hash(key, prev, entry, body)
        subjects.append(subject)
        bodies.append(body)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    # Identity values follow the SELECT's order, so ids keep the chain's order.
    await uow.execute(
        """INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash)
           SELECT $1, $2, $3, e.subject, e.details::jsonb, e.prev_hash, e.hash
           FROM unnest($4::text[], $5::text[], $6::bytea[], $7::bytea[]) WITH ORDINALITY
                AS e (subject, details, prev_hash, hash, n)
           ORDER BY e.n""",
        at,
        actor,
        action,
        subjects,
        bodies,
        prevs,
        hashes,
    )


async def keyed_from(db: Db) -> int:
    """The first id hashed with the key (migration 0009 recorded it)."""
    value = await db.fetchval("SELECT keyed_from FROM audit_chain")
    # Gone only if someone got past its trigger. Then no row counts as legacy: unkeyed rows show up
    # as breaks instead of being taken in the form anyone can compute.
    return ALL_KEYED if value is None else int(value)


async def rows(db: Db, after: int = -(2**63), batch: int = 5000) -> AsyncIterator[tuple[int, AuditEntry, bytes, bytes]]:
    """The rows with an id above `after` (by default every row, whatever id an intruder gave it), in id
    order, as ChainChecker.check takes them."""
    last_id = after
    while True:
        rows = await db.fetch(
            """SELECT id, at, actor, action, subject, details, prev_hash, hash
               FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2""",
            last_id,
            batch,
        )
        for r in rows:
            yield (
                r["id"],
                AuditEntry(r["at"], r["actor"], r["action"], r["subject"], r["details"]),
                r["prev_hash"],
                r["hash"],
            )
        if len(rows) < batch:
            return
        last_id = rows[-1]["id"]


@dataclass(frozen=True)
class Verification:
    rows: int  # rows read (up to the break when no anchors were compared)
    legacy_rows: int  # rows in the unkeyed form, before keyed_from
    keyed_from: int
    broken: ChainBreak | None
    anchors: tuple[Anchor, ...]  # the anchors compared, highest id first
    findings: tuple[str, ...]  # disagreements with the anchors, and anchors that are not genuine
    last: tuple[int, bytes] | None  # the last row read (id, stored hash); None: the log is empty

    @property
    def intact(self) -> bool:
        return self.broken is None and not self.findings


async def _check(db: Db, key: bytes, anchors: Sequence[Anchor], problems: Sequence[str]) -> Verification:
    start = await keyed_from(db)
    checker = ChainChecker(key, start)
    comparison = AnchorComparison(anchors, start)
    count = 0
    broken: ChainBreak | None = None
    last: tuple[int, bytes] | None = None
    async for row in rows(db):
        count += 1
        last = (row[0], row[3])
        comparison.see(row[0], row[3])
        if broken is None:
            broken = checker.check(*row)
            if broken is not None and not anchors:
                break  # nothing left to learn from the rest
    findings = (*problems, *comparison.findings())
    return Verification(count, checker.legacy_rows, start, broken, tuple(anchors), findings, last)


async def verify(db: Db) -> tuple[int, ChainBreak | None]:
    """Walk the whole chain with this process's key; return the rows read and the first break, if any.
    (The anchors are not read: see verify_with_anchors.)"""
    found = await _check(db, _key(), (), ())
    return found.rows, found.broken


async def read_anchors(storage: ObjectStorage, key: bytes, limit: int | None) -> tuple[list[Anchor], list[str]]:
    """The `limit` highest anchors (None: all) and a line for each object that is not a genuine one."""
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
            # Renamed to sort lower (as if it anchored an earlier row), it would drop off the page read.
            problems.append(f"anchor {name}: its name is not the one written for it (moved)")
            continue
        anchors.append(anchor)
    return anchors, problems


async def verify_with_anchors(
    db: Db, storage: ObjectStorage, key: bytes, anchors: int | None = DEFAULT_ANCHORS_CHECKED
) -> Verification:
    """The whole chain with the key, compared with the `anchors` highest anchors (None: all)."""
    found, problems = await read_anchors(storage, key, anchors)
    return await _check(db, key, found, problems)


async def write_anchor(db: Db, storage: ObjectStorage, key: bytes) -> Anchor | None:
    """Sign the chain's head into the object store; None when the log is empty or the newest anchor
    already holds this head.

    The embedded S3 server has no object lock, so whoever holds the store's credentials can delete
    anchors (not forge them: they are signed). In production give `audit-anchors/` a bucket with Object
    Lock in compliance mode, or replicate it to one the database owner cannot reach.
    """
    # One statement, one snapshot: the count and the head agree. Writers commit in chain order (the
    # advisory lock is held to commit), so every committed head is a whole chain.
    head = await db.fetchrow(
        """SELECT id, hash, (SELECT count(*) FROM audit_log) AS count
           FROM audit_log ORDER BY id DESC LIMIT 1"""
    )
    if head is None:
        return None  # nothing to lose yet
    newest, _ = await read_anchors(storage, key, 1)
    if newest and (newest[0].last_id, newest[0].hash) == (head["id"], head["hash"]):
        return None
    anchor = Anchor(head["id"], head["hash"], head["count"], await keyed_from(db), datetime.now(UTC))
    await asyncio.to_thread(storage.put_bytes, anchor_name(anchor), seal_anchor(key, anchor), "application/json")
    return anchor
