"""SQL for recovery cases and the bank recalls that claim the money back.

What a case is owed is read, never stored: the sum of its death record's overpayments not cancelled.
Every writer of a case takes its row lock first (`FOR UPDATE OF c`), so a recall answer, a write-off
and a reversal of the death take turns.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from infra.db import Db, UnitOfWork

_OWED = """coalesce((SELECT sum(o.amount_fen) FROM overpayments o
                     WHERE o.person_id = c.person_id AND o.death_record_id = c.death_record_id
                       AND o.status <> 'cancelled'), 0)::bigint"""
_CASE = f"""c.id, c.person_id, c.death_record_id, c.state, c.recovered_fen, c.written_off_fen,
            c.write_off_asked_by, c.write_off_reason, c.write_off_asked_at, c.approved_by,
            c.opened_at, c.updated_at, c.closed_at, {_OWED} AS owed_fen,
            EXISTS (SELECT 1 FROM recovery_recalls r WHERE r.person_id = c.person_id AND r.case_id = c.id
                      AND r.answered_at IS NULL AND r.cancelled_at IS NULL) AS recall_waiting"""
_SHOWN = f"""{_CASE}, p.name, p.national_id_masked, d.date_of_death"""
_JOINS = """JOIN persons p ON p.id = c.person_id
            LEFT JOIN death_records d ON d.person_id = c.person_id AND d.id = c.death_record_id"""


async def owed_for(uow: UnitOfWork, person_id: uuid.UUID, death_record_id: uuid.UUID) -> int:
    owed: int = await uow.fetchval(
        """SELECT coalesce(sum(amount_fen), 0)::bigint FROM overpayments
           WHERE person_id = $1 AND death_record_id = $2 AND status <> 'cancelled'""",
        person_id,
        death_record_id,
    )
    return owed


async def open_case(uow: UnitOfWork, person_id: uuid.UUID, death_record_id: uuid.UUID) -> uuid.UUID | None:
    """A new case for the death record; None when it has one already."""
    created: uuid.UUID | None = await uow.fetchval(
        """INSERT INTO recovery_cases (person_id, death_record_id) VALUES ($1, $2)
           ON CONFLICT (person_id, death_record_id) DO NOTHING RETURNING id""",
        person_id,
        death_record_id,
    )
    return created


async def _locked(uow: UnitOfWork, condition: str, *args: object) -> asyncpg.Record | None:
    """The case on `condition` (its person named), locked. The row is locked alone, then read: Citus
    routes no `FOR UPDATE` over a query with the case's subqueries, even on one shard."""
    if await uow.fetchval(f"SELECT c.id FROM recovery_cases c WHERE {condition} FOR UPDATE", *args) is None:
        return None
    return await uow.fetchrow(f"SELECT {_CASE} FROM recovery_cases c WHERE {condition}", *args)


async def case_of_death(uow: UnitOfWork, person_id: uuid.UUID, death_record_id: uuid.UUID) -> asyncpg.Record | None:
    return await _locked(uow, "c.person_id = $1 AND c.death_record_id = $2", person_id, death_record_id)


async def lock_case(uow: UnitOfWork, case_id: uuid.UUID, person_id: uuid.UUID | None = None) -> asyncpg.Record | None:
    """The case, locked. An operator names a case by its id alone: its person is read first (on every
    shard, recovery_cases_id_idx), as Citus takes `FOR UPDATE` only within one shard."""
    if person_id is None:
        person_id = await uow.fetchval("SELECT person_id FROM recovery_cases WHERE id = $1", case_id)
        if person_id is None:
            return None
    return await _locked(uow, "c.person_id = $1 AND c.id = $2", person_id, case_id)


async def case_view(db: Db, case_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {_SHOWN} FROM recovery_cases c {_JOINS} WHERE c.id = $1", case_id)


async def cases(db: Db, states: Sequence[str], after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """Cases in these states, oldest first (ids are UUIDv7: creation order)."""
    return await db.fetch(
        f"""SELECT {_SHOWN} FROM recovery_cases c {_JOINS}
            WHERE c.state = ANY ($1::text[]) AND ($2::uuid IS NULL OR c.id > $2)
            ORDER BY c.id LIMIT $3""",
        list(states),
        after,
        limit,
    )


async def save_money(
    uow: UnitOfWork, person_id: uuid.UUID, case_id: uuid.UUID, state: str, recovered_fen: int, written_off_fen: int
) -> None:
    await uow.execute(
        """UPDATE recovery_cases SET state = $3, recovered_fen = $4, written_off_fen = $5, updated_at = now(),
                  closed_at = CASE WHEN $3 IN ('recovered', 'written_off', 'cancelled') THEN (SELECT now()) END
           WHERE person_id = $1 AND id = $2""",
        person_id,
        case_id,
        state,
        recovered_fen,
        written_off_fen,
    )


async def settle_overpayments(uow: UnitOfWork, person_id: uuid.UUID, death_record_id: uuid.UUID, status: str) -> None:
    """The record's overpayments still to recover, now recovered or written off with their case."""
    await uow.execute(
        """UPDATE overpayments SET status = $3, updated_at = now()
           WHERE person_id = $1 AND death_record_id = $2 AND status = 'to_recover'""",
        person_id,
        death_record_id,
        status,
    )


async def ask_write_off(uow: UnitOfWork, person_id: uuid.UUID, case_id: uuid.UUID, actor: str, reason: str) -> None:
    await uow.execute(
        """UPDATE recovery_cases SET write_off_asked_by = $3, write_off_reason = $4, write_off_asked_at = now(),
                  updated_at = now()
           WHERE person_id = $1 AND id = $2""",
        person_id,
        case_id,
        actor,
        reason,
    )


async def approve_write_off(uow: UnitOfWork, person_id: uuid.UUID, case_id: uuid.UUID, approver: str) -> None:
    await uow.execute(
        "UPDATE recovery_cases SET approved_by = $3 WHERE person_id = $1 AND id = $2", person_id, case_id, approver
    )


# -- recalls ----------------------------------------------------------------------------------------
async def recallable_cases(uow: UnitOfWork) -> list[asyncpg.Record]:
    """Open cases no recall waits for, locked, each with the account its latest overpayment went to.
    The cases are many persons': they are locked by an UPDATE that changes nothing (Citus takes
    `SELECT … FOR UPDATE` only within one shard, an UPDATE on every shard), then read."""
    locked = await uow.fetch(
        """UPDATE recovery_cases c SET state = c.state
           WHERE c.state IN ('opened', 'recovered_partly')
             AND NOT EXISTS (SELECT 1 FROM recovery_recalls r
                             WHERE r.person_id = c.person_id AND r.case_id = c.id
                               AND r.answered_at IS NULL AND r.cancelled_at IS NULL)
           RETURNING c.person_id, c.id"""
    )
    return await uow.fetch(
        f"""SELECT {_CASE},
                   (SELECT pp.bank_account_enc FROM overpayments o
                    JOIN pension_payments pp ON pp.person_id = o.person_id AND pp.id = o.payment_id
                    WHERE o.person_id = c.person_id AND o.death_record_id = c.death_record_id
                      AND o.status <> 'cancelled'
                    ORDER BY pp.period DESC, pp.kind LIMIT 1) AS bank_account_enc
            FROM recovery_cases c JOIN unnest($1::uuid[], $2::uuid[]) AS k (person_id, id)
                 ON c.person_id = k.person_id AND c.id = k.id
            ORDER BY c.id""",
        [row["person_id"] for row in locked],
        [row["id"] for row in locked],
    )


async def request_recalls(
    uow: UnitOfWork,
    person_ids: Sequence[uuid.UUID],
    case_ids: Sequence[uuid.UUID],
    amounts: Sequence[int],
    accounts: Sequence[bytes],
    actor: str,
) -> None:
    """A recall per case, and each case waiting for the bank."""
    await uow.execute(
        """WITH asked AS (
               INSERT INTO recovery_recalls (person_id, case_id, amount_fen, bank_account_enc, requested_by)
               SELECT * , $5 FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bytea[])
               RETURNING person_id, case_id
           )
           UPDATE recovery_cases c SET state = 'recall_requested', updated_at = now()
           FROM asked a WHERE c.person_id = a.person_id AND c.id = a.case_id""",
        list(person_ids),
        list(case_ids),
        list(amounts),
        list(accounts),
        actor,
    )


def waiting_recalls(conn: Any) -> Any:
    """Every recall the bank has not answered, in reference order, for the recall file (a cursor:
    run inside a transaction)."""
    return conn.cursor(
        """SELECT r.id, r.amount_fen, r.bank_account_enc, p.name
           FROM recovery_recalls r JOIN persons p ON p.id = r.person_id
           WHERE r.answered_at IS NULL AND r.cancelled_at IS NULL
           ORDER BY r.id""",
        prefetch=5_000,
    )


async def waiting_totals(db: Db) -> asyncpg.Record:
    row = await db.fetchrow(
        """SELECT count(*) AS recalls, coalesce(sum(amount_fen), 0)::bigint AS amount_fen
           FROM recovery_recalls WHERE answered_at IS NULL AND cancelled_at IS NULL"""
    )
    assert row is not None  # an aggregate always gives one row
    return row


async def lock_recall(uow: UnitOfWork, recall_id: uuid.UUID) -> asyncpg.Record | None:
    """The recall, locked. The bank's answer names it by its id alone: its person is read first (on
    every shard, recovery_recalls_id_idx), as Citus takes `FOR UPDATE` only within one shard."""
    person_id = await uow.fetchval("SELECT person_id FROM recovery_recalls WHERE id = $1", recall_id)
    if person_id is None:
        return None
    return await uow.fetchrow(
        """SELECT person_id, id, case_id, amount_fen, recovered_fen, answered_at, cancelled_at
           FROM recovery_recalls WHERE person_id = $1 AND id = $2 FOR UPDATE""",
        person_id,
        recall_id,
    )


async def answer_recall(
    uow: UnitOfWork, person_id: uuid.UUID, recall_id: uuid.UUID, recovered_fen: int, reason: str | None
) -> None:
    await uow.execute(
        """UPDATE recovery_recalls SET recovered_fen = $3, bank_reason = $4, answered_at = now()
           WHERE person_id = $1 AND id = $2""",
        person_id,
        recall_id,
        recovered_fen,
        reason,
    )


async def cancel_recalls(uow: UnitOfWork, person_id: uuid.UUID, case_id: uuid.UUID) -> int:
    status = await uow.execute(
        """UPDATE recovery_recalls SET cancelled_at = now()
           WHERE person_id = $1 AND case_id = $2 AND answered_at IS NULL AND cancelled_at IS NULL""",
        person_id,
        case_id,
    )
    return int(status.split()[-1])


async def recalls_of(db: Db, person_id: uuid.UUID, case_id: uuid.UUID) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, amount_fen, requested_by, requested_at, recovered_fen, bank_reason, answered_at, cancelled_at
           FROM recovery_recalls WHERE person_id = $1 AND case_id = $2 ORDER BY id""",
        person_id,
        case_id,
    )
