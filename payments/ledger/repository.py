"""SQL for the medical ledger: accounts and transfers, allocations, charges, refunds, and terminals'
idempotency keys.

A balance changes only through a transfer (triggers in 0003_payments.sql). Every writer first locks
the accounts it moves money between, in id order, so a charge (medical -> merchant) and a refund
(merchant -> medical) on the same two accounts queue up instead of deadlocking, and transfer ids
follow the order in which an account's transfers were committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from infra.db import Db, UnitOfWork


# -- idempotency keys ----------------------------------------------------------------------------
async def claim_key(
    db: Db, terminal_id: uuid.UUID, key: str, request_hash: bytes, lifetime: timedelta
) -> datetime | None:
    """Claim a new key in its own short statement; the claim's lock time, or None when the key exists."""
    locked_at: datetime | None = await db.fetchval(
        """INSERT INTO idempotency_keys (terminal_id, key, request_hash, locked_at, expires_at)
           VALUES ($1, $2, $3, now(), now() + $4::interval)
           ON CONFLICT (terminal_id, key) DO NOTHING RETURNING locked_at""",
        terminal_id,
        key,
        request_hash,
        lifetime,
    )
    return locked_at


async def stored_key(db: Db, terminal_id: uuid.UUID, key: str) -> asyncpg.Record | None:
    """The key as stored, with the database's clock (staleness is judged on one clock) and whether a
    transaction holds its row (`held`: its request is working, see rules.CLAIM_GRACE). The probe
    takes the weakest row lock, FOR KEY SHARE, which only hold_key's FOR UPDATE (or a takeover, or a
    release) conflicts with, and skips a locked row rather than waiting for it; a claim's own
    request is never slowed by more than this one statement."""
    return await db.fetchrow(
        """SELECT k.request_hash, k.locked_at, k.status_code, k.response, k.expires_at, now() AS now,
                  k.locked_at IS NOT NULL AND NOT EXISTS (
                      SELECT 1 FROM idempotency_keys f WHERE f.terminal_id = $1 AND f.key = $2
                      FOR KEY SHARE SKIP LOCKED
                  ) AS held
           FROM idempotency_keys k WHERE k.terminal_id = $1 AND k.key = $2""",
        terminal_id,
        key,
    )


async def take_over_key(
    db: Db,
    terminal_id: uuid.UUID,
    key: str,
    request_hash: bytes,
    lifetime: timedelta,
    grace: timedelta,
) -> datetime | None:
    """Compare-and-set: claim an expired key, or this request's own claim left by a request that
    died (rules.claim_dead: unanswered, older than `grace`, and its row locked by no transaction).
    The conditions are checked again on the row as it is now, under its lock, so of two requests
    that saw the same dead claim only one takes it, and a claim whose request holds it (or took hold
    of it since) is skipped, never waited for: the other gets None."""
    locked_at: datetime | None = await db.fetchval(
        """WITH dead AS (
               SELECT terminal_id, key FROM idempotency_keys
               WHERE terminal_id = $1 AND key = $2
                 AND (expires_at <= now() OR (request_hash = $3 AND locked_at <= now() - $5::interval))
               FOR UPDATE SKIP LOCKED
           )
           UPDATE idempotency_keys k
           SET request_hash = $3, locked_at = now(), status_code = NULL, response = NULL,
               created_at = now(), expires_at = now() + $4::interval
           FROM dead WHERE k.terminal_id = dead.terminal_id AND k.key = dead.key
           RETURNING k.locked_at""",
        terminal_id,
        key,
        request_hash,
        lifetime,
        grace,
    )
    return locked_at


async def hold_key(
    uow: UnitOfWork, terminal_id: uuid.UUID, key: str, locked_at: datetime, idle_limit: timedelta
) -> bool:
    """Lock our claim for the rest of the transaction; False when another request took it over.

    The transaction is also ended by PostgreSQL once its connection has sat idle for `idle_limit`
    (rules.HELD_IDLE_LIMIT): a client that vanished without closing its socket then lets go of the
    claim, and of the accounts it locked, instead of holding them until TCP gives up on it."""
    return bool(
        await uow.fetchval(
            """SELECT set_config('idle_in_transaction_session_timeout', $4, true) IS NOT NULL
               FROM idempotency_keys
               WHERE terminal_id = $1 AND key = $2 AND locked_at = $3 FOR UPDATE""",
            terminal_id,
            key,
            locked_at,
            f"{round(idle_limit.total_seconds() * 1000)}ms",
        )
    )


async def answer_key(
    uow: UnitOfWork, terminal_id: uuid.UUID, key: str, status_code: int, response: dict[str, Any]
) -> None:
    await uow.execute(
        """UPDATE idempotency_keys SET locked_at = NULL, status_code = $3, response = $4
           WHERE terminal_id = $1 AND key = $2""",
        terminal_id,
        key,
        status_code,
        response,
    )


async def release_key(db: Db, terminal_id: uuid.UUID, key: str, locked_at: datetime) -> None:
    """Forget our unanswered claim, so that a retry runs at once."""
    await db.execute(
        "DELETE FROM idempotency_keys WHERE terminal_id = $1 AND key = $2 AND locked_at = $3",
        terminal_id,
        key,
        locked_at,
    )


# -- accounts and transfers ----------------------------------------------------------------------
async def lock_accounts(
    uow: UnitOfWork, person_id: uuid.UUID, terminal_id: uuid.UUID | None
) -> dict[str, asyncpg.Record]:
    """Lock, in id order, the person's medical account and the terminal's merchant account, or the
    fund when no terminal is named (opening them on first use); by kind: id, balance_fen."""
    for _ in range(2):
        rows = await uow.fetch(
            """SELECT id, kind, balance_fen FROM ledger_accounts
               WHERE person_id = $1 OR terminal_id = $2 OR ($2 IS NULL AND kind = 'fund')
               ORDER BY id FOR UPDATE""",
            person_id,
            terminal_id,
        )
        if len(rows) == 2:
            return {row["kind"]: row for row in rows}
        # First use: one statement, medical before merchant everywhere, so two first uses wait for
        # each other in one order. Accounts exist from then on, so this costs a round trip once.
        await uow.execute(
            """INSERT INTO ledger_accounts (kind, person_id, terminal_id)
               SELECT kind, person_id, terminal_id
               FROM (VALUES ('medical', $1::uuid, NULL::uuid), ('merchant', NULL, $2::uuid))
                    v (kind, person_id, terminal_id)
               WHERE kind = 'medical' OR terminal_id IS NOT NULL
               ON CONFLICT DO NOTHING""",
            person_id,
            terminal_id,
        )
    raise RuntimeError(f"ledger accounts missing for person {person_id} and terminal {terminal_id}")


async def transfer(
    uow: UnitOfWork, debit: uuid.UUID, credit: uuid.UUID, amount_fen: int, kind: str, reference: uuid.UUID
) -> None:
    await uow.execute(
        """INSERT INTO ledger_transfers (debit_account, credit_account, amount_fen, kind, reference)
           VALUES ($1, $2, $3, $4, $5)""",
        debit,
        credit,
        amount_fen,
        kind,
        reference,
    )


# -- allocations ---------------------------------------------------------------------------------
async def insert_allocation(
    uow: UnitOfWork, person_id: uuid.UUID, year: int, amount_fen: int, imported_by: str
) -> uuid.UUID | None:
    """The new allocation's id; None when the person already has one for that year."""
    allocation_id: uuid.UUID | None = await uow.fetchval(
        """INSERT INTO medical_allocations (person_id, year, amount_fen, imported_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (person_id, year) DO NOTHING RETURNING id""",
        person_id,
        year,
        amount_fen,
        imported_by,
    )
    return allocation_id


async def allocated_fen(uow: UnitOfWork, person_id: uuid.UUID, year: int) -> int:
    amount: int = await uow.fetchval(
        "SELECT amount_fen FROM medical_allocations WHERE person_id = $1 AND year = $2", person_id, year
    )
    return amount


# -- charges and refunds -------------------------------------------------------------------------
async def insert_charge(
    uow: UnitOfWork,
    terminal_id: uuid.UUID,
    holder: asyncpg.Record,
    amount_fen: int,
    description: str,
    accounts: tuple[uuid.UUID, uuid.UUID],
) -> asyncpg.Record:
    """The charge and its transfer (medical -> merchant, `accounts`) in one statement; `holder` is
    the consumed QR token's row (cards.service.CardService.consume_qr)."""
    row = await uow.fetchrow(
        """WITH charge AS (
               INSERT INTO medical_charges (terminal_id, person_id, card_id, qr_token_id, amount_fen, description)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at
           ), moved AS (
               INSERT INTO ledger_transfers (debit_account, credit_account, amount_fen, kind, reference)
               SELECT $7, $8, $5, 'charge', id FROM charge
               RETURNING 1
           )
           SELECT charge.id, charge.created_at FROM charge, moved""",
        terminal_id,
        holder["person_id"],
        holder["card_id"],
        holder["qr_token_id"],
        amount_fen,
        description,
        *accounts,
    )
    assert row is not None
    return row


async def charge_for_refund(uow: UnitOfWork, charge_id: uuid.UUID, merchant: str) -> asyncpg.Record | None:
    """The charge, locked (its refunds queue up), when a terminal of `merchant` made it."""
    return await uow.fetchrow(
        """SELECT c.id, c.person_id, c.terminal_id, c.amount_fen, c.refunded_fen, c.description,
                  k.card_number, p.national_id_masked
           FROM medical_charges c JOIN terminals t ON t.id = c.terminal_id
           JOIN cards k ON k.person_id = c.person_id AND k.id = c.card_id JOIN persons p ON p.id = c.person_id
           WHERE c.id = $1 AND t.merchant = $2
           FOR UPDATE OF c""",
        charge_id,
        merchant,
    )


async def insert_refund(
    uow: UnitOfWork, charge_id: uuid.UUID, terminal_id: uuid.UUID, amount_fen: int
) -> asyncpg.Record:
    """Record the refund and add it to the charge's refunded total (whose CHECK caps it at the charge)."""
    row = await uow.fetchrow(
        """WITH counted AS (UPDATE medical_charges SET refunded_fen = refunded_fen + $3 WHERE id = $1)
           INSERT INTO medical_refunds (charge_id, terminal_id, amount_fen) VALUES ($1, $2, $3)
           RETURNING id, created_at""",
        charge_id,
        terminal_id,
        amount_fen,
    )
    assert row is not None
    return row


# -- the cardholder's view -----------------------------------------------------------------------
async def medical_balance(db: Db, person_id: uuid.UUID) -> int:
    """The balance; 0 for an account not opened yet."""
    balance: int | None = await db.fetchval(
        "SELECT balance_fen FROM ledger_accounts WHERE person_id = $1 AND kind = 'medical'", person_id
    )
    return balance or 0


async def entries(db: Db, person_id: uuid.UUID, before_id: int | None, limit: int) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on the transfer id; amounts signed from the cardholder's side, and
    the balance after each (the running sum in id order, which is commit order for one account)."""
    return await db.fetch(
        """WITH account AS (SELECT id FROM ledger_accounts WHERE person_id = $1 AND kind = 'medical'),
                moves AS (
                    SELECT t.id, t.kind, t.reference, t.created_at, t.amount_fen
                    FROM ledger_transfers t JOIN account a ON t.credit_account = a.id
                    UNION ALL
                    SELECT t.id, t.kind, t.reference, t.created_at, -t.amount_fen
                    FROM ledger_transfers t JOIN account a ON t.debit_account = a.id
                ),
                running AS (SELECT m.*, sum(m.amount_fen) OVER (ORDER BY m.id) AS balance_after_fen FROM moves m)
           SELECT r.id, r.kind, r.amount_fen, r.balance_after_fen::bigint AS balance_after_fen, r.created_at,
                  coalesce(c.id, rc.id) AS charge_id, coalesce(c.description, rc.description) AS description,
                  t.merchant, a.year
           FROM running r
           LEFT JOIN medical_allocations a ON r.kind = 'allocation' AND a.id = r.reference
           LEFT JOIN medical_charges c ON r.kind = 'charge' AND c.id = r.reference
           LEFT JOIN medical_refunds f ON r.kind = 'refund' AND f.id = r.reference
           LEFT JOIN medical_charges rc ON rc.id = f.charge_id
           LEFT JOIN terminals t ON t.id = coalesce(c.terminal_id, f.terminal_id)
           WHERE $2::bigint IS NULL OR r.id < $2
           ORDER BY r.id DESC LIMIT $3""",
        person_id,
        before_id,
        limit,
    )
