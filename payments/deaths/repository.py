"""SQL for death records, the overpayments they reveal, and their reversal.

Every writer of a person's death record holds that person's row lock (`lock_person`), so the
statements after it need no locks of their own; it waits first for any disbursement batch in
progress (`lock_payment_records`), so every payment a batch made is seen by the overpayment sweep.
"""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg

from infra.db import UnitOfWork
from payments.disbursement.repository import lock_payment_records
from payments.disbursement.rules import REPORTED_DECEASED


async def lock_person(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    await lock_payment_records(uow, shared=False)
    # The id through the national ID lookup table, then the person locked by id: a lock on one shard.
    person_id = await uow.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    if person_id is None:
        return None
    return await uow.fetchrow(
        "SELECT id, birth_date, national_id_masked FROM persons WHERE id = $1 FOR UPDATE", person_id
    )


async def standing_record(uow: UnitOfWork, person_id: uuid.UUID) -> asyncpg.Record | None:
    """The death record not reversed (at most one: death_records_standing_idx)."""
    return await uow.fetchrow(
        "SELECT id, date_of_death, card_status_before FROM death_records WHERE person_id = $1 AND reversed_at IS NULL",
        person_id,
    )


async def create_record(
    uow: UnitOfWork, person_id: uuid.UUID, died: date, source: str, card_status_before: str | None
) -> uuid.UUID:
    record_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO death_records (person_id, date_of_death, source, card_status_before)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        person_id,
        died,
        source,
        card_status_before,
    )
    return record_id


async def change_date(uow: UnitOfWork, person_id: uuid.UUID, record_id: uuid.UUID, died: date, source: str) -> None:
    await uow.execute(
        "UPDATE death_records SET date_of_death = $3, source = $4 WHERE person_id = $1 AND id = $2",
        person_id,
        record_id,
        died,
        source,
    )


async def set_vital_status(uow: UnitOfWork, person_id: uuid.UUID, died: date | None) -> None:
    """Deceased on `died`, or alive again when it is None."""
    await uow.execute(
        """UPDATE persons SET vital_status = CASE WHEN $2::date IS NULL THEN 'alive' ELSE 'deceased' END,
                              date_of_death = $2, updated_at = now()
           WHERE id = $1""",
        person_id,
        died,
    )


async def set_entitlement_status(uow: UnitOfWork, person_id: uuid.UUID, status: str) -> str | None:
    """The entitlement's new status; None for a person without a pension."""
    changed: str | None = await uow.fetchval(
        """UPDATE pension_entitlements SET status = $2, updated_at = now() WHERE person_id = $1 RETURNING status""",
        person_id,
        status,
    )
    return changed


# What the record's date of death makes recoverable, as one statement so it is the same whether it
# runs for a new record or after a corrected date. A payment is owed back for the months after the
# month of death it paid: a monthly payment for such a month whole, a back-payment for the withheld
# months after it that it covered, a re-payment for the returned monthly payments and back-payments
# of such months it paid again (a returned re-payment it paid again counts by the month it was made).
# A payment the bank returned never reached anyone. A claim the date no longer supports is
# cancelled; one already recovered is left for a person to settle.
RECOMPUTE_OVERPAYMENTS_SQL = """
    WITH death AS (
        SELECT id, person_id, date_trunc('month', date_of_death)::date AS month
        FROM death_records WHERE person_id = $1 AND id = $2
    ), due AS (
        SELECT p.id AS payment_id, death.person_id, death.id AS death_record_id,
               CASE WHEN p.kind = 'monthly' THEN p.amount_fen
                    WHEN p.kind = 'repay' THEN
                        (SELECT coalesce(sum(CASE WHEN r.kind <> 'back_pay' THEN
                                                      CASE WHEN r.period > death.month THEN r.amount_fen ELSE 0 END
                                                 ELSE (SELECT coalesce(sum(w.amount_fen), 0) FROM pension_payments w
                                                       WHERE w.person_id = r.person_id AND w.back_paid_by = r.id
                                                         AND w.period > death.month)
                                            END), 0)
                         FROM pension_payments r WHERE r.person_id = p.person_id AND r.repaid_by = p.id)
                    ELSE (SELECT coalesce(sum(w.amount_fen), 0) FROM pension_payments w
                          WHERE w.person_id = p.person_id AND w.back_paid_by = p.id AND w.period > death.month)
               END AS amount_fen
        FROM death JOIN pension_payments p ON p.person_id = death.person_id
        WHERE p.person_id = $1 AND p.status = 'paid' AND p.bank_status <> 'returned'
          AND (p.kind IN ('back_pay', 'repay') OR p.period > death.month)
    ), owed AS (
        SELECT * FROM due WHERE amount_fen > 0
    ), upserted AS (
        INSERT INTO overpayments (payment_id, person_id, death_record_id, amount_fen)
        SELECT payment_id, person_id, death_record_id, amount_fen FROM owed
        ON CONFLICT (person_id, payment_id) DO UPDATE SET
            death_record_id = excluded.death_record_id, amount_fen = excluded.amount_fen,
            status = 'to_recover', updated_at = excluded.updated_at
        WHERE overpayments.status <> 'recovered'
          AND (overpayments.death_record_id, overpayments.amount_fen, overpayments.status)
              IS DISTINCT FROM (excluded.death_record_id, excluded.amount_fen, 'to_recover')
        RETURNING 1
    ), dropped AS (
        UPDATE overpayments o SET status = 'cancelled', updated_at = now()
        WHERE o.person_id = $1 AND o.death_record_id = $2 AND o.status = 'to_recover'
          AND o.payment_id NOT IN (SELECT payment_id FROM owed)
        RETURNING 1
    )
    SELECT count(*) AS payments, coalesce(sum(amount_fen), 0)::bigint AS amount_fen FROM owed"""


async def recompute_overpayments(uow: UnitOfWork, person_id: uuid.UUID, record_id: uuid.UUID) -> asyncpg.Record:
    """(payments, amount_fen) owed back under the record as it now stands."""
    row = await uow.fetchrow(RECOMPUTE_OVERPAYMENTS_SQL, person_id, record_id)
    assert row is not None  # an aggregate always gives one row
    return row


async def reverse_record(uow: UnitOfWork, person_id: uuid.UUID, record_id: uuid.UUID, actor: str, reason: str) -> None:
    await uow.execute(
        """UPDATE death_records SET reversed_at = now(), reversed_by = $3, reversal_reason = $4
           WHERE person_id = $1 AND id = $2""",
        person_id,
        record_id,
        actor,
        reason,
    )


async def cancel_overpayments(uow: UnitOfWork, person_id: uuid.UUID, record_id: uuid.UUID) -> int:
    """Cancel the record's claims still to recover; the number cancelled. Recovered money stays
    recorded as recovered: paying it back is a person's decision."""
    status = await uow.execute(
        """UPDATE overpayments SET status = 'cancelled', updated_at = now()
           WHERE person_id = $1 AND death_record_id = $2 AND status = 'to_recover'""",
        person_id,
        record_id,
    )
    return int(status.split()[-1])


async def restore_withheld_months(uow: UnitOfWork, person_id: uuid.UUID, died: date) -> list[date]:
    """A withheld monthly record for every run after the month of death that skipped the person
    (and is not before the pension started), so the next run back-pays it; the months restored.
    A run still going that has not reached the person yet is left to pay them itself. The runs are
    read first and passed in: they are the coordinator's, the records the person's shard's (Citus
    joins no coordinator table with a distributed one); the caller holds PAYMENT_RECORDS_LOCK
    exclusively, so no batch moves a run on in between."""
    runs = await uow.fetch(
        """SELECT id, period FROM disbursement_runs
           WHERE period > date_trunc('month', $2::date)::date AND (state <> 'running' OR resume_after >= $1)""",
        person_id,
        died,
    )
    if not runs:
        return []
    rows = await uow.fetch(
        """INSERT INTO pension_payments (run_id, person_id, period, kind, status, withheld_reason, amount_fen)
           SELECT r.id, e.person_id, r.period, 'monthly', 'withheld', $2, e.monthly_amount_fen
           FROM pension_entitlements e, unnest($3::uuid[], $4::date[]) AS r (id, period)
           WHERE e.person_id = $1 AND r.period >= e.start_month
           ON CONFLICT (person_id, period, kind) DO NOTHING
           RETURNING period""",
        person_id,
        REPORTED_DECEASED,
        [r["id"] for r in runs],
        [r["period"] for r in runs],
    )
    return sorted(row["period"] for row in rows)
