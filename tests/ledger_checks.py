"""Helpers of the medical-charge tests: the ledger invariants (what must hold whatever happened), an
allocation, and an HTTP client whose requests really run at the same time."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg

from app.services import Services
from tests.factories import SamplePerson, write_jsonl


async def ledger_violations(db: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """Every broken invariant, described; [] when the ledger is sound."""
    found: list[str] = []
    # Each balance is the replay of its transfers (credits - debits); medical and merchant never below 0.
    for row in await db.fetch(
        """SELECT a.id, a.kind, a.balance_fen,
                  coalesce((SELECT sum(amount_fen) FROM ledger_transfers WHERE credit_account = a.id), 0)
                - coalesce((SELECT sum(amount_fen) FROM ledger_transfers WHERE debit_account = a.id), 0) AS replayed
           FROM ledger_accounts a"""
    ):
        if row["balance_fen"] != row["replayed"]:
            found.append(f"{row['kind']} {row['id']}: balance {row['balance_fen']} != replay {row['replayed']}")
        if row["kind"] != "fund" and row["balance_fen"] < 0:
            found.append(f"{row['kind']} {row['id']}: negative balance {row['balance_fen']}")
    # Double entry: what left some account arrived in another, so all balances sum to zero.
    total = await db.fetchval("SELECT coalesce(sum(balance_fen), 0) FROM ledger_accounts")
    if total != 0:
        found.append(f"balances sum to {total}, not 0 (debits != credits)")
    # A charge's refunded total is the sum of its refunds.
    for row in await db.fetch(
        """SELECT c.id, c.refunded_fen, coalesce(sum(r.amount_fen), 0) AS refunds
           FROM medical_charges c LEFT JOIN medical_refunds r ON r.charge_id = c.id
           GROUP BY c.id HAVING c.refunded_fen <> coalesce(sum(r.amount_fen), 0)"""
    ):
        found.append(f"charge {row['id']}: refunded_fen {row['refunded_fen']} != refunds {row['refunds']}")
    # Every allocation, charge and refund moved its amount exactly once.
    for row in await db.fetch(
        """WITH carried AS (
               SELECT 'allocation' AS kind, id, amount_fen FROM medical_allocations
               UNION ALL SELECT 'charge', id, amount_fen FROM medical_charges
               UNION ALL SELECT 'refund', id, amount_fen FROM medical_refunds)
           SELECT c.kind, c.id, count(t.id) AS transfers, coalesce(sum(t.amount_fen), 0) AS moved, c.amount_fen
           FROM carried c LEFT JOIN ledger_transfers t ON t.reference = c.id AND t.kind = c.kind
           GROUP BY c.kind, c.id, c.amount_fen HAVING count(t.id) <> 1 OR coalesce(sum(t.amount_fen), 0) <> c.amount_fen"""
    ):
        found.append(
            f"{row['kind']} {row['id']}: {row['transfers']} transfer(s) moving {row['moved']} of {row['amount_fen']}"
        )
    return found


async def medical_balance(db: asyncpg.Pool | asyncpg.Connection, person_id: uuid.UUID) -> int:
    balance: int | None = await db.fetchval(
        "SELECT balance_fen FROM ledger_accounts WHERE person_id = $1 AND kind = 'medical'", person_id
    )
    return balance or 0


async def allocate(services: Services, folder: Path, person: SamplePerson, amount_fen: int, year: int = 2026) -> Any:
    """Give the person `amount_fen` for `year` through the administrators' import."""
    path = write_jsonl(
        folder / f"allocation-{person.phone}-{year}.jsonl",
        [{"national_id": person.national_id, "year": year, "amount_fen": amount_fen}],
    )
    report = await services.medical.import_allocations(path, "system:test")
    assert report.created == 1, report.errors
    return report
