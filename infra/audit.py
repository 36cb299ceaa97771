"""The append-only, hash-chained audit log.

Each row's hash is SHA-256 over the previous row's hash and the row's canonical form, so an edited,
deleted or inserted row breaks the chain at that point. Writers serialise on an advisory lock held
until their transaction commits, so the chain is a total order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.db import Db, UnitOfWork

GENESIS = b"\x00" * 32
_CHAIN_LOCK = 0x4A0D17  # advisory lock key for the audit chain


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]


def canonical(entry: AuditEntry) -> bytes:
    body = json.dumps(entry.details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "\x1f".join((entry.at.isoformat(), entry.actor, entry.action, entry.subject, body)).encode()


def chain_hash(prev_hash: bytes, entry: AuditEntry) -> bytes:
    return hashlib.sha256(prev_hash + canonical(entry)).digest()


@dataclass(frozen=True)
class ChainBreak:
    row_id: int
    reason: str


class ChainChecker:
    """Fed the rows in id order, names the first whose stored hashes disagree with the chain."""

    def __init__(self) -> None:
        self._expected_prev = GENESIS

    def check(self, row_id: int, entry: AuditEntry, prev_hash: bytes, stored_hash: bytes) -> ChainBreak | None:
        if prev_hash != self._expected_prev:
            return ChainBreak(row_id, "does not follow the previous row (a row was deleted or inserted before it)")
        if chain_hash(prev_hash, entry) != stored_hash:
            return ChainBreak(row_id, "its content does not match its hash (edited)")
        self._expected_prev = stored_hash
        return None


async def record(
    uow: UnitOfWork, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
) -> None:
    """Append one entry in the caller's transaction (it lands only if the business change does)."""
    entry = AuditEntry(datetime.now(UTC), actor, action, subject, dict(details or {}))
    await uow.execute("SELECT pg_advisory_xact_lock($1)", _CHAIN_LOCK)
    prev = await uow.fetchval("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1") or GENESIS
    await uow.execute(
        """INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        entry.at,
        entry.actor,
        entry.action,
        entry.subject,
        entry.details,
        prev,
        chain_hash(prev, entry),
    )


async def _rows(db: Db, batch: int = 5000) -> AsyncIterator[tuple[int, AuditEntry, bytes, bytes]]:
    last_id = -(2**63)  # every row, whatever id an intruder gave it
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


async def verify(db: Db) -> tuple[int, ChainBreak | None]:
    """Walk the whole chain; return the number of rows read and the first break, if any."""
    checker = ChainChecker()
    count = 0
    async for row in _rows(db):
        count += 1
        if found := checker.check(*row):
            return count, found
    return count, None
