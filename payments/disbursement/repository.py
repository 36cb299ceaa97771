"""SQL for disbursement runs and pension payments. Runs are set-based: one statement per batch."""

from __future__ import annotations

import uuid
from datetime import date, datetime
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


# The run is the coordinator's and the entitlements are on the shards: counted first, then written
# (Citus inserts into a coordinator table from no distributed SELECT in the same statement).
DUE_COUNT_SQL = f"SELECT count(*) FROM pension_entitlements e JOIN persons p ON p.id = e.person_id WHERE {_DUE}"
START_RUN_SQL = """
    INSERT INTO disbursement_runs (period, pay_date, entitlements, requested_by)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (period) DO NOTHING
    RETURNING id"""

_RUN_COLUMNS = """r.id, r.period, r.pay_date, r.state, r.entitlements, r.processed, r.requested_by,
                  r.started_at, r.completed_at, r.problem, r.problem_at, r.gave_up,
                  r.approved_by, r.approved_at, r.released_by, r.released_at, r.reconciled_at"""


async def start_run(db: Db, period: date, pay_on: date, actor: str) -> tuple[uuid.UUID, bool]:
    """The run of this period: created now (True) or the one already there (False)."""
    due: int = await db.fetchval(DUE_COUNT_SQL, period)
    created: uuid.UUID | None = await db.fetchval(START_RUN_SQL, period, pay_on, due, actor)
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
               completed_at = CASE WHEN $3 = 0 THEN (SELECT now()) END,
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


_TOTALS_SQL = """
    SELECT count(*) FILTER (WHERE kind = 'monthly' AND status = 'paid') AS paid_count,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'monthly' AND status = 'paid'), 0)::bigint AS paid_fen,
           count(*) FILTER (WHERE status = 'withheld') AS withheld_count,
           coalesce(sum(amount_fen) FILTER (WHERE status = 'withheld'), 0)::bigint AS withheld_fen,
           count(*) FILTER (WHERE kind = 'back_pay') AS back_pay_count,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'back_pay'), 0)::bigint AS back_pay_fen,
           count(*) FILTER (WHERE kind = 'repay') AS repay_count,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'repay'), 0)::bigint AS repay_fen,
           count(*) FILTER (WHERE bank_status = 'pending') AS unanswered_count,
           count(*) FILTER (WHERE bank_status = 'returned') AS returned_count,
           coalesce(sum(amount_fen) FILTER (WHERE bank_status = 'returned'), 0)::bigint AS returned_fen
    FROM pension_payments WHERE run_id = $1"""


async def run_view(db: Db, run_id: uuid.UUID) -> dict[str, Any] | None:
    """The run with the totals of its payments. Two statements: the run is the coordinator's and its
    payments are spread over the shards, and Citus joins no coordinator table with a distributed one."""
    run = await db.fetchrow(f"SELECT {_RUN_COLUMNS} FROM disbursement_runs r WHERE r.id = $1", run_id)
    if run is None:
        return None
    totals = await db.fetchrow(_TOTALS_SQL, run_id)
    assert totals is not None  # an aggregate always gives one row
    return {**dict(run), **dict(totals)}


async def withheld_by_reason(db: Db, run_id: uuid.UUID) -> list[asyncpg.Record]:
    """The run's withheld payments per reason, the largest count first."""
    return await db.fetch(
        """SELECT withheld_reason AS reason, count(*) AS count, sum(amount_fen)::bigint AS fen
           FROM pension_payments WHERE run_id = $1 AND status = 'withheld'
           GROUP BY withheld_reason ORDER BY count(*) DESC, withheld_reason""",
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


# Imports of the bank's answers take turns: each reads the payments' states, judges every line, then
# writes. An advisory lock rather than the rows' locks: the answers name payments of many persons, and
# Citus takes `FOR UPDATE` only within one shard. The bank's answers are written nowhere else.
BANK_ANSWERS_LOCK = 0x62_61_6E_6B  # "bank"


async def lock_bank_answers(uow: UnitOfWork) -> None:
    await uow.execute("SELECT pg_advisory_xact_lock($1)", BANK_ANSWERS_LOCK)


async def bank_states(uow: UnitOfWork, references: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The payments answered, with the state of the run that sent them (its file released or not).
    The bank's reference is the payment's id alone: read on every shard (pension_payments_id_idx)."""
    await lock_bank_answers(uow)
    rows = await uow.fetch(
        """SELECT p.person_id, p.id, p.bank_status, p.run_id FROM pension_payments p
           WHERE p.id = ANY ($1::uuid[]) AND p.status = 'paid'""",
        references,
    )
    runs = {
        row["id"]: row["state"]
        for row in await uow.fetch(
            "SELECT id, state FROM disbursement_runs WHERE id = ANY ($1::uuid[])", list({r["run_id"] for r in rows})
        )
    }
    return {row["id"]: {**dict(row), "run_state": runs[row["run_id"]]} for row in rows}


async def record_bank_answers(
    uow: UnitOfWork,
    person_ids: list[uuid.UUID],
    ids: list[uuid.UUID],
    results: list[str],
    reasons: list[str | None],
) -> None:
    """The bank's answers; a returned payment never reached the person, so nothing of it is to recover.
    Shared with batches, exclusive for a death's overpayment sweep: a sweep that read a payment as sent
    has committed its overpayment before a return of that payment cancels it, or it sees the return."""
    await lock_payment_records(uow, shared=True)
    await uow.execute(
        """UPDATE pension_payments p
           SET bank_status = CASE WHEN a.result = 'paid' THEN 'confirmed' ELSE 'returned' END,
               bank_return_reason = a.reason, bank_updated_at = now()
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS a (person_id, id, result, reason)
           WHERE p.person_id = a.person_id AND p.id = a.id""",
        person_ids,
        ids,
        results,
        reasons,
    )
    await uow.execute(
        """UPDATE overpayments o SET status = 'cancelled', updated_at = now()
           FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS a (person_id, id, result)
           WHERE o.person_id = a.person_id AND o.payment_id = a.id AND a.result = 'returned'
             AND o.status = 'to_recover'""",
        person_ids,
        ids,
        results,
    )


_PAYMENT_COLUMNS = """p.id, p.period, p.kind, p.status, p.withheld_reason, p.amount_fen, p.covers,
                      p.bank_account_masked, p.bank_status, p.bank_return_reason, p.repaid_by, p.created_at,
                      coalesce(o.amount_fen, 0) AS to_recover_fen"""
_RECOVERY = """LEFT JOIN overpayments o ON o.person_id = p.person_id AND o.payment_id = p.id
                                      AND o.status = 'to_recover'"""


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
                  p.bank_updated_at, p.repaid_by, per.national_id_masked, per.name
           FROM pension_payments p JOIN persons per ON per.id = p.person_id
           WHERE p.bank_status = 'returned' AND ($1::uuid IS NULL OR p.id > $1)
           ORDER BY p.id LIMIT $2""",
        after,
        limit,
    )


# -- returned payments paid again ------------------------------------------------------------------
# Completions of runs take turns at paying returned payments again: one reads what is owed and decides,
# then marks and pays; a run of another month completing at the same time waits, then finds them paid
# again. An advisory lock rather than the payments' row locks: they are many persons', and Citus takes
# `FOR UPDATE` only within one shard. REPAY_SQL marks only payments not marked yet besides.
REPAY_LOCK = 0x72_65_70_61  # "repa"

# The returned payments, not paid again yet, of the persons this run pays (their monthly record is
# paid: alive, certified, the pension active, as back-pay asks), beside the account on file.
RETURNED_OF_PAID_SQL = """
    SELECT r.id, r.person_id, r.bank_account_enc AS sent_enc, r.bank_updated_at AS returned_at,
           e.bank_account_enc AS on_file_enc, e.bank_account_masked AS on_file_masked,
           e.bank_account_confirmed_enc AS confirmed_enc, e.bank_account_confirmed_at AS confirmed_at
    FROM pension_payments r
    JOIN pension_payments m ON m.person_id = r.person_id AND m.period = $2 AND m.kind = 'monthly'
                           AND m.run_id = $1 AND m.status = 'paid'
    JOIN pension_entitlements e ON e.person_id = r.person_id
    WHERE r.bank_status = 'returned' AND r.repaid_by IS NULL
    ORDER BY r.person_id, r.id"""


async def returned_of_paid(uow: UnitOfWork, run: asyncpg.Record) -> list[asyncpg.Record]:
    await uow.execute("SELECT pg_advisory_xact_lock($1)", REPAY_LOCK)
    return await uow.fetch(RETURNED_OF_PAID_SQL, run["id"], run["period"])


# One statement: a `repay` record per person paying the chosen returned payments (their sum, to the
# account the decision was made on), each of them marked as paid again by it. The payments are marked
# first and the records written from what was marked, so a payment already paid again is never paid
# twice; the foreign key from a marked payment to its new record is checked at commit (migration 0020).
REPAY_SQL = """
    WITH chosen AS (
        SELECT * FROM unnest($3::uuid[], $4::uuid[]) AS c (id, person_id)
    ), account AS (
        SELECT * FROM unnest($5::uuid[], $6::bytea[], $7::text[]) AS a (person_id, enc, masked)
    ), repay AS MATERIALIZED (
        SELECT person_id, uuidv7() AS id FROM account
    ), marked AS (
        UPDATE pension_payments r SET repaid_by = rp.id
        FROM chosen c JOIN repay rp ON rp.person_id = c.person_id
        WHERE r.person_id = c.person_id AND r.id = c.id AND r.bank_status = 'returned' AND r.repaid_by IS NULL
        RETURNING r.person_id, r.period, r.amount_fen, rp.id AS repay_id
    ), written AS (
        INSERT INTO pension_payments (id, run_id, person_id, period, kind, status, amount_fen, covers,
                                      bank_account_enc, bank_account_masked, bank_status)
        SELECT m.repay_id, $1, m.person_id, $2, 'repay', 'paid', sum(m.amount_fen),
               array_agg(DISTINCT m.period ORDER BY m.period), a.enc, a.masked, 'pending'
        FROM marked m JOIN account a ON a.person_id = m.person_id
        GROUP BY m.repay_id, m.person_id, a.enc, a.masked
        RETURNING amount_fen
    )
    SELECT (SELECT count(*) FROM marked) AS payments, (SELECT count(*) FROM written) AS records,
           (SELECT coalesce(sum(amount_fen), 0) FROM written)::bigint AS amount_fen"""


async def repay(
    uow: UnitOfWork,
    run: asyncpg.Record,
    chosen: list[tuple[uuid.UUID, uuid.UUID]],
    accounts: list[tuple[uuid.UUID, bytes, str]],
) -> asyncpg.Record:
    """`chosen`: (payment, person) to pay again; `accounts`: (person, account sealed, masked) to pay to."""
    row = await uow.fetchrow(
        REPAY_SQL,
        run["id"],
        run["period"],
        [c[0] for c in chosen],
        [c[1] for c in chosen],
        [a[0] for a in accounts],
        [a[1] for a in accounts],
        [a[2] for a in accounts],
    )
    assert row is not None
    return row


# -- approval, release, reconciliation ------------------------------------------------------------
async def signatures(uow: UnitOfWork, run_id: uuid.UUID) -> asyncpg.Record | None:
    """The run's state and who signed it, locked: two approvals at once are taken in turn."""
    return await uow.fetchrow(
        "SELECT id, state, requested_by, approved_by, released_by FROM disbursement_runs WHERE id = $1 FOR UPDATE",
        run_id,
    )


async def approve(uow: UnitOfWork, run_id: uuid.UUID, actor: str) -> None:
    await uow.execute(
        """UPDATE disbursement_runs SET state = 'approved', approved_by = $2, approved_at = now()
           WHERE id = $1 AND state = 'completed'""",
        run_id,
        actor,
    )


async def release(uow: UnitOfWork, run_id: uuid.UUID, actor: str) -> None:
    await uow.execute(
        """UPDATE disbursement_runs SET state = 'released', released_by = $2, released_at = now()
           WHERE id = $1 AND state = 'approved'""",
        run_id,
        actor,
    )


async def reconcile(uow: UnitOfWork, run_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Released runs the bank has now answered for whole (no paid record still pending) become
    reconciled; those, with their counts for the audit log. The counts are read first and the runs
    written after (Citus joins no coordinator table with a distributed one). No answer lands in between:
    an import of answers calls this under the bank answers' lock, and a release before any answer for
    the run can be taken (its file is not released until this commits). A released run gets no new
    pending payment. Not the lock here: a release holds its run's row, which an import's reconciliation
    writes."""
    counts = {
        row["run_id"]: row
        for row in await uow.fetch(
            """SELECT run_id, count(*) FILTER (WHERE bank_status = 'pending') AS pending,
                      count(*) FILTER (WHERE bank_status = 'confirmed') AS confirmed,
                      count(*) FILTER (WHERE bank_status = 'returned') AS returned
               FROM pension_payments WHERE run_id = ANY ($1::uuid[]) GROUP BY run_id""",
            run_ids,
        )
    }
    answered = [run_id for run_id in run_ids if run_id not in counts or counts[run_id]["pending"] == 0]
    done = await uow.fetch(
        """UPDATE disbursement_runs SET state = 'reconciled', reconciled_at = now()
           WHERE id = ANY ($1::uuid[]) AND state = 'released'
           RETURNING id, period""",
        answered,
    )
    return [
        {
            "id": row["id"],
            "period": row["period"],
            "confirmed": counts[row["id"]]["confirmed"] if row["id"] in counts else 0,
            "returned": counts[row["id"]]["returned"] if row["id"] in counts else 0,
        }
        for row in done
    ]


# -- bank accounts ----------------------------------------------------------------------------------
async def entitlement_of(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    """The person's pension with the account on file, locked until the correction commits."""
    # The id through the national ID lookup table, then the pension locked by id: a lock on one shard.
    person_id = await uow.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    if person_id is None:
        return None
    return await uow.fetchrow(
        """SELECT p.id AS person_id, p.national_id_masked, e.bank_account_enc, e.bank_account_masked
           FROM persons p JOIN pension_entitlements e ON e.person_id = p.id
           WHERE p.id = $1
           FOR UPDATE OF e""",
        person_id,
    )


async def set_account(uow: UnitOfWork, person_id: uuid.UUID, enc: bytes, masked: str, actor: str) -> datetime:
    """The account on file, confirmed by `actor` now (the same sealed value in both columns); when."""
    at: datetime = await uow.fetchval(
        """UPDATE pension_entitlements
           SET bank_account_enc = $2, bank_account_masked = $3, bank_account_confirmed_enc = $2,
               bank_account_confirmed_at = now(), bank_account_confirmed_by = $4, updated_at = now()
           WHERE person_id = $1
           RETURNING bank_account_confirmed_at""",
        person_id,
        enc,
        masked,
        actor,
    )
    return at


async def awaiting_repay(uow: UnitOfWork, person_id: uuid.UUID) -> asyncpg.Record:
    """The person's returned payments not paid again: what the next run looks at after a correction."""
    row = await uow.fetchrow(
        """SELECT count(*) AS payments, coalesce(sum(amount_fen), 0)::bigint AS amount_fen FROM pension_payments
           WHERE person_id = $1 AND bank_status = 'returned' AND repaid_by IS NULL""",
        person_id,
    )
    assert row is not None
    return row
