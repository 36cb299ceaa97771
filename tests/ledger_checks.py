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
    # Each balance is the replay of its transfers (credits - debits); medical and merchant clearing
    # never below 0, fund clearing never above (it only hands out).
    for row in await db.fetch(
        """SELECT a.id, a.kind, a.balance_fen, coalesce(r.replayed, 0) AS replayed
           FROM ledger_accounts a
           LEFT JOIN (SELECT person_id, account, sum(amount_fen) AS replayed
                      FROM (SELECT person_id, credit_account AS account, amount_fen FROM ledger_transfers
                            UNION ALL SELECT person_id, debit_account, -amount_fen FROM ledger_transfers) m
                      GROUP BY person_id, account) r ON r.person_id = a.person_id AND r.account = a.id"""
    ):
        if row["balance_fen"] != row["replayed"]:
            found.append(f"{row['kind']} {row['id']}: balance {row['balance_fen']} != replay {row['replayed']}")
        if (row["balance_fen"] > 0) if row["kind"] == "fund_clearing" else (row["balance_fen"] < 0):
            found.append(f"{row['kind']} {row['id']}: balance {row['balance_fen']} on the wrong side of 0")
    # An entry never leaves its person (its shard): both its accounts are the transfer's person's.
    for row in await db.fetch(
        """SELECT t.id FROM ledger_transfers t
           LEFT JOIN ledger_accounts d ON d.person_id = t.person_id AND d.id = t.debit_account
           LEFT JOIN ledger_accounts c ON c.person_id = t.person_id AND c.id = t.credit_account
           WHERE d.id IS NULL OR c.id IS NULL"""
    ):
        found.append(f"transfer {row['id']} spans persons")
    # Double entry within each person: what left one of the person's accounts arrived in another.
    for row in await db.fetch(
        "SELECT person_id, sum(balance_fen) AS total FROM ledger_accounts GROUP BY person_id HAVING sum(balance_fen) <> 0"
    ):
        found.append(f"person {row['person_id']}: balances sum to {row['total']}, not 0 (debits != credits)")
    # Settlement: a clearing account's settled total is what was carried from it, a system account's
    # balance is what was carried into it, and the whole ledger sums to 0.
    for row in await db.fetch(
        """SELECT a.id, a.settled_fen, coalesce(sum(l.amount_fen), 0) AS carried
           FROM ledger_accounts a LEFT JOIN ledger_settlements l ON l.clearing_account = a.id
           GROUP BY a.person_id, a.id HAVING a.settled_fen <> coalesce(sum(l.amount_fen), 0)"""
    ):
        found.append(f"clearing {row['id']}: settled {row['settled_fen']} != carried {row['carried']}")
    for row in await db.fetch(
        """SELECT s.id, s.kind, s.balance_fen, coalesce(sum(l.amount_fen), 0) AS carried
           FROM ledger_system_accounts s LEFT JOIN ledger_settlements l ON l.system_account = s.id
           GROUP BY s.id HAVING s.balance_fen <> coalesce(sum(l.amount_fen), 0)"""
    ):
        found.append(f"system {row['kind']} {row['id']}: balance {row['balance_fen']} != carried {row['carried']}")
    total = await db.fetchval(
        """SELECT coalesce((SELECT sum(balance_fen) FILTER (WHERE kind = 'medical')
                                 + sum(balance_fen - settled_fen) FILTER (WHERE kind <> 'medical')
                            FROM ledger_accounts), 0)
                + coalesce((SELECT sum(balance_fen) FROM ledger_system_accounts), 0)"""
    )
    if total != 0:
        found.append(f"medical, unsettled clearing and system balances sum to {total}, not 0")
    # A charge's refunded total is the sum of its refunds.
    for row in await db.fetch(
        """SELECT c.id, c.refunded_fen, coalesce(sum(r.amount_fen), 0) AS refunds
           FROM medical_charges c LEFT JOIN medical_refunds r ON r.person_id = c.person_id AND r.charge_id = c.id
           GROUP BY c.person_id, c.id HAVING c.refunded_fen <> coalesce(sum(r.amount_fen), 0)"""
    ):
        found.append(f"charge {row['id']}: refunded_fen {row['refunded_fen']} != refunds {row['refunds']}")
    # Every allocation, charge and refund moved its amount exactly once, within its person.
    for kind, table in (
        ("allocation", "medical_allocations"),
        ("charge", "medical_charges"),
        ("refund", "medical_refunds"),
    ):
        for row in await db.fetch(
            f"""SELECT c.id, count(t.id) AS transfers, coalesce(sum(t.amount_fen), 0) AS moved, c.amount_fen
                FROM {table} c
                LEFT JOIN ledger_transfers t ON t.person_id = c.person_id AND t.reference = c.id AND t.kind = $1
                GROUP BY c.person_id, c.id, c.amount_fen
                HAVING count(t.id) <> 1 OR coalesce(sum(t.amount_fen), 0) <> c.amount_fen""",
            kind,
        ):
            found.append(
                f"{kind} {row['id']}: {row['transfers']} transfer(s) moving {row['moved']} of {row['amount_fen']}"
            )
        # A transfer of that kind names a row of its own person (none left over, none of another's).
        for row in await db.fetch(
            f"""SELECT t.id FROM ledger_transfers t
                LEFT JOIN {table} c ON c.person_id = t.person_id AND c.id = t.reference
                WHERE t.kind = $1 AND c.id IS NULL""",
            kind,
        ):
            found.append(f"transfer {row['id']}: its {kind} is not its person's")
    # Every charge can be found by its id alone (its refunds name nothing else): the lookup table is
    # of another group, so the two are compared here.
    charges = {(r["id"], r["person_id"]) for r in await db.fetch("SELECT id, person_id FROM medical_charges")}
    looked_up = {
        (r["charge_id"], r["person_id"])
        for r in await db.fetch("SELECT charge_id, person_id FROM medical_charge_persons")
    }
    found.extend(f"charge {charge}: not in medical_charge_persons" for charge, _ in sorted(charges - looked_up))
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
