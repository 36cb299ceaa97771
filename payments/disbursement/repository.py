"""SQL for disbursement runs and pension payments. Runs are set-based: one statement per batch."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import asyncpg

from core.pension import DUE as DUE  # re-exported
from core.pension import WITHHELD_REASON as WITHHELD_REASON
from infra.db import Db, UnitOfWork

_DUE = DUE.format(period="$1")

# Batches and bank answers hold it shared; recording or reversing a death holds it exclusively. A
# death is thus recorded between batches: a batch never pays a person who died while it ran without
# the death's overpayment sweep seeing that payment.
PAYMENT_RECORDS_LOCK = 0x70_61_79_6D  # "paym"


async def lock_payment_records(uow: UnitOfWork, *, shared: bool) -> None:
    """PAYMENT_RECORDS_LOCK until the transaction ends: shared by writers of payments, exclusive for a death."""
    await uow.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}($1)", PAYMENT_RECORDS_LOCK)


START_RUN_SQL = f"""
    INSERT INTO disbursement_runs (period, pay_date, entitlements, requested_by)
    SELECT $1, $2, count(*), $3
    FROM pension_entitlements e JOIN persons p ON p.id = e.person_id WHERE {_DUE}
    ON CONFLICT (period) DO NOTHING
    RETURNING id"""

_RUN_COLUMNS = """r.id, r.period, r.pay_date, r.state, r.entitlements, r.processed, r.requested_by,
                  r.started_at, r.completed_at, r.problem, r.problem_at, r.gave_up"""


async def start_run(db: Db, period: date, pay_on: date, actor: str) -> tuple[uuid.UUID, bool]:
    """The run of this period: created now (True) or the one already there (False)."""
    created: uuid.UUID | None = await db.fetchval(START_RUN_SQL, period, pay_on, actor)
    if created is not None:
        return created, True
    existing: uuid.UUID = await db.fetchval("SELECT id FROM disbursement_runs WHERE period = $1", period)
    return existing, False


async def lock_run(uow: UnitOfWork, run_id: uuid.UUID) -> asyncpg.Record | None:
    """Taken at the start of each batch: executors of one run (a restart, a second starter) take turns."""
    return await uow.fetchrow(
        "SELECT id, period, pay_date, state, resume_after FROM disbursement_runs WHERE id = $1 FOR UPDATE", run_id
    )


# One batch, in one statement: the monthly records of the next `$5` entitlements in person order
# after the last person done, then back-pay for the batch's persons paid this month (one record
# paying every withheld month not yet back-paid, and each of those months marked as paid by it).
# Back-pay joins the batch, not the records
# just written: a statement does not see its own inserts, and the planner knows the batch's size.
BATCH_SQL = f"""
    WITH batch AS (
        SELECT e.person_id, e.monthly_amount_fen, e.bank_account_enc, e.bank_account_masked,
               {WITHHELD_REASON.format(pay_date="$3")} AS reason
        FROM pension_entitlements e JOIN persons p ON p.id = e.person_id
        WHERE {_DUE} AND ($4::uuid IS NULL OR e.person_id > $4)
        ORDER BY e.person_id
        LIMIT $5
    ), monthly AS (
        INSERT INTO pension_payments (run_id, person_id, period, kind, status, withheld_reason, amount_fen,
                                      bank_account_enc, bank_account_masked, bank_status)
        SELECT $2, b.person_id, $1, 'monthly',
               CASE WHEN b.reason IS NULL THEN 'paid' ELSE 'withheld' END, b.reason, b.monthly_amount_fen,
               CASE WHEN b.reason IS NULL THEN b.bank_account_enc END,
               CASE WHEN b.reason IS NULL THEN b.bank_account_masked END,
               CASE WHEN b.reason IS NULL THEN 'pending' END
        FROM batch b
        ON CONFLICT (person_id, period, kind) DO NOTHING
        RETURNING 1
    ), owed AS (
        SELECT w.person_id, array_agg(w.period ORDER BY w.period) AS months, sum(w.amount_fen)::bigint AS total
        FROM pension_payments w
        WHERE w.status = 'withheld' AND w.back_paid_by IS NULL AND w.period < $1
          AND w.person_id IN (SELECT person_id FROM batch WHERE reason IS NULL)
        GROUP BY w.person_id
    ), back_pay AS (
        INSERT INTO pension_payments (run_id, person_id, period, kind, status, amount_fen, covers,
                                      bank_account_enc, bank_account_masked, bank_status)
        SELECT $2, o.person_id, $1, 'back_pay', 'paid', o.total, o.months,
               b.bank_account_enc, b.bank_account_masked, 'pending'
        FROM owed o JOIN batch b ON b.person_id = o.person_id
        ON CONFLICT (person_id, period, kind) DO NOTHING
        RETURNING id, person_id, covers
    ), marked AS (
        UPDATE pension_payments w SET back_paid_by = bp.id
        FROM back_pay bp
        WHERE w.person_id = bp.person_id AND w.status = 'withheld' AND w.back_paid_by IS NULL
          AND w.period = ANY (bp.covers)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch) AS scanned,
           (SELECT person_id FROM batch ORDER BY person_id DESC LIMIT 1) AS last_person,
           (SELECT count(*) FROM monthly) AS monthly, (SELECT count(*) FROM back_pay) AS back_pays,
           (SELECT count(*) FROM marked) AS months_back_paid"""


async def run_batch(uow: UnitOfWork, run: asyncpg.Record, batch: int) -> int:
    """Records for the next `batch` entitlements; the run's progress moves in the same transaction.
    Returns how many entitlements the batch covered: 0 once every one is done."""
    await lock_payment_records(uow, shared=True)
    done = await uow.fetchrow(BATCH_SQL, run["period"], run["id"], run["pay_date"], run["resume_after"], batch)
    assert done is not None
    scanned: int = done["scanned"]
    await uow.execute(
        """UPDATE disbursement_runs SET resume_after = coalesce($2, resume_after), processed = processed + $3,
               state = CASE WHEN $3 = 0 THEN 'completed' ELSE state END,
               completed_at = CASE WHEN $3 = 0 THEN now() END,
               problem = NULL, problem_at = NULL, gave_up = false
           WHERE id = $1""",
        run["id"],
        done["last_person"],
        scanned,
    )
    return scanned


async def note_problem(db: Db, run_id: uuid.UUID, problem: str, gave_up: bool) -> None:
    await db.execute(
        """UPDATE disbursement_runs SET problem = $2, problem_at = now(), gave_up = $3
           WHERE id = $1 AND state = 'running'""",
        run_id,
        problem,
        gave_up,
    )


async def recent_runs(db: Db, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(f"SELECT {_RUN_COLUMNS} FROM disbursement_runs r ORDER BY r.period DESC LIMIT $1", limit)


async def run_view(db: Db, run_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {_RUN_COLUMNS},
                   count(p.id) FILTER (WHERE p.kind = 'monthly' AND p.status = 'paid') AS paid_count,
                   coalesce(sum(p.amount_fen) FILTER (WHERE p.kind = 'monthly' AND p.status = 'paid'), 0)::bigint AS paid_fen,
                   count(p.id) FILTER (WHERE p.status = 'withheld') AS withheld_count,
                   coalesce(sum(p.amount_fen) FILTER (WHERE p.status = 'withheld'), 0)::bigint AS withheld_fen,
                   count(p.id) FILTER (WHERE p.kind = 'back_pay') AS back_pay_count,
                   coalesce(sum(p.amount_fen) FILTER (WHERE p.kind = 'back_pay'), 0)::bigint AS back_pay_fen,
                   count(p.id) FILTER (WHERE p.bank_status = 'returned') AS returned_count,
                   coalesce(sum(p.amount_fen) FILTER (WHERE p.bank_status = 'returned'), 0)::bigint AS returned_fen
            FROM disbursement_runs r LEFT JOIN pension_payments p ON p.run_id = r.id
            WHERE r.id = $1
            GROUP BY r.id""",
        run_id,
    )


async def run_state(db: Db, run_id: uuid.UUID) -> str | None:
    state: str | None = await db.fetchval("SELECT state FROM disbursement_runs WHERE id = $1", run_id)
    return state


async def run_of_period(db: Db, period: date) -> uuid.UUID | None:
    run_id: uuid.UUID | None = await db.fetchval("SELECT id FROM disbursement_runs WHERE period = $1", period)
    return run_id


def order_rows(conn: Any, run_id: uuid.UUID) -> Any:
    """The run's paid records for the bank, streamed (iterate inside a transaction)."""
    return conn.cursor(
        """SELECT p.id, p.amount_fen, p.bank_account_enc, per.name
           FROM pension_payments p JOIN persons per ON per.id = p.person_id
           WHERE p.run_id = $1 AND p.status = 'paid'
           ORDER BY p.id""",
        run_id,
        prefetch=5_000,
    )


async def bank_states(uow: UnitOfWork, references: list[uuid.UUID]) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await uow.fetch(
        """SELECT id, bank_status FROM pension_payments
           WHERE id = ANY ($1::uuid[]) AND status = 'paid' ORDER BY id FOR UPDATE""",
        references,
    )
    return {row["id"]: row for row in rows}


async def record_bank_answers(
    uow: UnitOfWork, ids: list[uuid.UUID], results: list[str], reasons: list[str | None]
) -> None:
    """The bank's answers; a returned payment never reached the person, so nothing of it is to recover.
    Shared with batches, exclusive for a death's overpayment sweep: a sweep that read a payment as sent
    has committed its overpayment before a return of that payment cancels it, or it sees the return."""
    await lock_payment_records(uow, shared=True)
    await uow.execute(
        """UPDATE pension_payments p
           SET bank_status = CASE a.result WHEN 'paid' THEN 'confirmed' ELSE 'returned' END,
               bank_return_reason = a.reason, bank_updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[]) AS a (id, result, reason)
           WHERE p.id = a.id""",
        ids,
        results,
        reasons,
    )
    await uow.execute(
        """UPDATE overpayments SET status = 'cancelled', updated_at = now()
           WHERE status = 'to_recover' AND payment_id IN (
               SELECT a.id FROM unnest($1::uuid[], $2::text[]) AS a (id, result) WHERE a.result = 'returned')""",
        ids,
        results,
    )


_PAYMENT_COLUMNS = """p.id, p.period, p.kind, p.status, p.withheld_reason, p.amount_fen, p.covers,
                      p.bank_account_masked, p.bank_status, p.bank_return_reason, p.created_at,
                      coalesce(o.amount_fen, 0) AS to_recover_fen"""
_RECOVERY = "LEFT JOIN overpayments o ON o.payment_id = p.id AND o.status = 'to_recover'"


async def payments_page(
    db: Db, person_id: uuid.UUID, after: tuple[date, str, uuid.UUID] | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first: by period, then back-pay before the monthly record, then id."""
    return await db.fetch(
        f"""SELECT {_PAYMENT_COLUMNS} FROM pension_payments p {_RECOVERY}
            WHERE p.person_id = $1
              AND ($2::date IS NULL OR (p.period, p.kind, p.id) < ($2, $3::text, $4::uuid))
            ORDER BY p.period DESC, p.kind DESC, p.id DESC
            LIMIT $5""",
        person_id,
        *(after or (None, None, None)),
        limit,
    )


async def payment(db: Db, person_id: uuid.UUID, payment_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM pension_payments p {_RECOVERY} WHERE p.person_id = $1 AND p.id = $2",
        person_id,
        payment_id,
    )


async def payments_of_year(db: Db, person_id: uuid.UUID, year: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"""SELECT {_PAYMENT_COLUMNS} FROM pension_payments p {_RECOVERY}
            WHERE p.person_id = $1 AND p.period >= make_date($2, 1, 1) AND p.period < make_date($2 + 1, 1, 1)
            ORDER BY p.period, p.kind""",
        person_id,
        year,
    )


async def returned_payments(db: Db, after: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """For operators: payments the bank sent back, oldest first."""
    return await db.fetch(
        """SELECT p.id, p.period, p.kind, p.amount_fen, p.bank_account_masked, p.bank_return_reason,
                  p.bank_updated_at, per.national_id_masked, per.name
           FROM pension_payments p JOIN persons per ON per.id = p.person_id
           WHERE p.bank_status = 'returned' AND ($1::uuid IS NULL OR p.id > $1)
           ORDER BY p.id LIMIT $2""",
        after,
        limit,
    )
