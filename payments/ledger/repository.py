"""SQL for the medical ledger: accounts and transfers, allocations, charges, refunds, and terminals'
idempotency keys.

Every entry stays within one person (one shard on Citus): its other side is the person's clearing
account, for the fund (allocations) or for the terminal (charges, refunds), and a batch settlement
carries the clearing accounts' totals into the system's fund and merchant accounts
(settle_batch). A balance changes only through a transfer, in the transfer's own statement
(`transfer`); the CHECKs keep medical and merchant balances from going below zero. Every writer
first locks the accounts it moves money between, in id order, so a charge (medical -> clearing) and
a refund (clearing -> medical) on the same two accounts queue up instead of deadlocking; the
transfer's UUIDv7 id is made after the locks, so ids follow the order in which an account's
transfers were committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from infra.db import Db, UnitOfWork


# -- idempotency keys ----------------------------------------------------------------------------
async def claim_key(
    db: Db, person_id: uuid.UUID, terminal_id: uuid.UUID, key: str, request_hash: bytes, lifetime: timedelta
) -> datetime | None:
    """Claim a new key in its own short statement; the claim's lock time, or None when the key exists."""
    locked_at: datetime | None = await db.fetchval(
        """INSERT INTO idempotency_keys (person_id, terminal_id, key, request_hash, locked_at, expires_at)
           VALUES ($1, $2, $3, $4, now(), now() + $5::interval)
           ON CONFLICT (person_id, terminal_id, key) DO NOTHING RETURNING locked_at""",
        person_id,
        terminal_id,
        key,
        request_hash,
        lifetime,
    )
    return locked_at


async def stored_key(db: Db, person_id: uuid.UUID, terminal_id: uuid.UUID, key: str) -> asyncpg.Record | None:
    """The key as stored, with the database's clock (staleness is judged on one clock) and whether a
    transaction holds its row (`held`: its request is working, see rules.CLAIM_GRACE). The probe
    takes the weakest row lock, FOR KEY SHARE, which only hold_key's FOR UPDATE (or a takeover, or a
    release) conflicts with, and skips a locked row rather than waiting for it; a claim's own
    request is never slowed by more than this one statement."""
    return await db.fetchrow(
        """SELECT k.request_hash, k.locked_at, k.status_code, k.response, k.expires_at, now() AS now,
                  k.locked_at IS NOT NULL AND NOT EXISTS (
                      SELECT 1 FROM idempotency_keys f WHERE f.person_id = $1 AND f.terminal_id = $2 AND f.key = $3
                      FOR KEY SHARE SKIP LOCKED
                  ) AS held
           FROM idempotency_keys k WHERE k.person_id = $1 AND k.terminal_id = $2 AND k.key = $3""",
        person_id,
        terminal_id,
        key,
    )


async def take_over_key(
    db: Db,
    person_id: uuid.UUID,
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
               SELECT person_id, terminal_id, key FROM idempotency_keys
               WHERE person_id = $6 AND terminal_id = $1 AND key = $2
                 AND (expires_at <= now() OR (request_hash = $3 AND locked_at <= now() - $5::interval))
               FOR UPDATE SKIP LOCKED
           )
           UPDATE idempotency_keys k
           SET request_hash = $3, locked_at = now(), status_code = NULL, response = NULL,
               created_at = now(), expires_at = now() + $4::interval
           FROM dead WHERE k.person_id = $6 AND k.terminal_id = dead.terminal_id AND k.key = dead.key
           RETURNING k.locked_at""",
        terminal_id,
        key,
        request_hash,
        lifetime,
        grace,
        person_id,
    )
    return locked_at


async def hold_key(
    uow: UnitOfWork, person_id: uuid.UUID, terminal_id: uuid.UUID, key: str, locked_at: datetime, idle_limit: timedelta
) -> bool:
    """Lock our claim for the rest of the transaction; False when another request took it over.

    The transaction is also ended by PostgreSQL once its connection has sat idle for `idle_limit`
    (rules.HELD_IDLE_LIMIT): a client that vanished without closing its socket then lets go of the
    claim, and of the accounts it locked, instead of holding them until TCP gives up on it."""
    return bool(
        await uow.fetchval(
            """SELECT set_config('idle_in_transaction_session_timeout', $5, true) IS NOT NULL
               FROM idempotency_keys
               WHERE person_id = $1 AND terminal_id = $2 AND key = $3 AND locked_at = $4 FOR UPDATE""",
            person_id,
            terminal_id,
            key,
            locked_at,
            f"{round(idle_limit.total_seconds() * 1000)}ms",
        )
    )


async def answer_key(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    terminal_id: uuid.UUID,
    key: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    await uow.execute(
        """UPDATE idempotency_keys SET locked_at = NULL, status_code = $4, response = $5
           WHERE person_id = $1 AND terminal_id = $2 AND key = $3""",
        person_id,
        terminal_id,
        key,
        status_code,
        response,
    )


async def release_key(db: Db, person_id: uuid.UUID, terminal_id: uuid.UUID, key: str, locked_at: datetime) -> None:
    """Forget our unanswered claim, so that a retry runs at once."""
    await db.execute(
        "DELETE FROM idempotency_keys WHERE person_id = $1 AND terminal_id = $2 AND key = $3 AND locked_at = $4",
        person_id,
        terminal_id,
        key,
        locked_at,
    )


# -- who a request is for ------------------------------------------------------------------------
async def charge_person(db: Db, charge_id: uuid.UUID) -> uuid.UUID | None:
    """The person a charge was made to (medical_charge_persons, keyed by the charge's id)."""
    person_id: uuid.UUID | None = await db.fetchval(
        "SELECT person_id FROM medical_charge_persons WHERE charge_id = $1", charge_id
    )
    return person_id


# -- accounts and transfers ----------------------------------------------------------------------
async def lock_accounts(
    uow: UnitOfWork, person_id: uuid.UUID, terminal_id: uuid.UUID | None
) -> dict[str, asyncpg.Record]:
    """Lock, in id order, the person's medical account and the person's clearing account for the
    terminal, or for the fund when no terminal is named (opening them on first use); by kind
    ('medical', 'merchant_clearing' or 'fund_clearing'): id, balance_fen."""
    other = "fund_clearing" if terminal_id is None else "merchant_clearing"
    for _ in range(2):
        rows = await uow.fetch(
            """SELECT id, kind, balance_fen FROM ledger_accounts
               WHERE person_id = $1
                 AND (kind = 'medical' OR (kind = $3 AND terminal_id IS NOT DISTINCT FROM $2))
               ORDER BY id FOR UPDATE""",
            person_id,
            terminal_id,
            other,
        )
        if len(rows) == 2:
            return {row["kind"]: row for row in rows}
        # First use: one statement, medical before clearing everywhere, so two first uses wait for
        # each other in one order. Accounts exist from then on, so this costs a round trip once.
        await uow.execute(
            """INSERT INTO ledger_accounts (kind, person_id, terminal_id)
               VALUES ('medical', $1, NULL), ($3, $1, $2)
               ON CONFLICT DO NOTHING""",
            person_id,
            terminal_id,
            other,
        )
    raise RuntimeError(f"ledger accounts missing for person {person_id} and terminal {terminal_id}")


# The transfer and both balances in one statement: a balance never moves without its transfer, nor a
# transfer without its balances. A CHECK refusing a balance below zero refuses the transfer with it.
_TRANSFER_SQL = """
    WITH moved AS (
        INSERT INTO ledger_transfers AS t (person_id, debit_account, credit_account, amount_fen, kind, reference)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING t.id
    ), debited AS (
        UPDATE ledger_accounts SET balance_fen = balance_fen - $4 WHERE person_id = $1 AND id = $2 RETURNING 1
    ), credited AS (
        UPDATE ledger_accounts SET balance_fen = balance_fen + $4 WHERE person_id = $1 AND id = $3 RETURNING 1
    )
    SELECT (SELECT count(*) FROM debited) + (SELECT count(*) FROM credited) AS applied FROM moved"""


async def transfer(
    uow: UnitOfWork,
    person_id: uuid.UUID,
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount_fen: int,
    kind: str,
    reference: uuid.UUID,
) -> None:
    applied = await uow.fetchval(_TRANSFER_SQL, person_id, debit, credit, amount_fen, kind, reference)
    if applied != 2:  # both accounts are locked by the caller, so they exist: never expected
        raise RuntimeError(f"transfer {kind} {reference} applied to {applied} of 2 accounts")


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
    """The charge; `holder` is the consumed QR token's row (cards.service.CardService.consume_qr).
    Its transfer (medical -> the person's clearing account for the terminal, `accounts`) follows in
    the same unit of work."""
    person_id = holder["person_id"]
    row = await uow.fetchrow(
        """INSERT INTO medical_charges AS c (terminal_id, person_id, card_id, qr_token_id, amount_fen, description)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING c.id, c.created_at""",
        terminal_id,
        person_id,
        holder["card_id"],
        holder["qr_token_id"],
        amount_fen,
        description,
    )
    assert row is not None
    # The charge's person, for its refunds (on Citus a row on the charge id's shard, committed with
    # the charge in one two-phase commit).
    await uow.execute("INSERT INTO medical_charge_persons (charge_id, person_id) VALUES ($1, $2)", row["id"], person_id)
    await transfer(uow, person_id, *accounts, amount_fen, "charge", row["id"])
    return row


async def charge_for_refund(
    uow: UnitOfWork, person_id: uuid.UUID, charge_id: uuid.UUID, merchant: str
) -> asyncpg.Record | None:
    """The charge, locked (its refunds queue up), when a terminal of `merchant` made it."""
    return await uow.fetchrow(
        """SELECT c.id, c.person_id, c.terminal_id, c.amount_fen, c.refunded_fen, c.description,
                  k.card_number, p.national_id_masked
           FROM medical_charges c JOIN terminals t ON t.id = c.terminal_id
           JOIN cards k ON k.person_id = c.person_id AND k.id = c.card_id JOIN persons p ON p.id = c.person_id
           WHERE c.person_id = $1 AND c.id = $2 AND t.merchant = $3
           FOR UPDATE OF c""",
        person_id,
        charge_id,
        merchant,
    )


async def insert_refund(
    uow: UnitOfWork, person_id: uuid.UUID, charge_id: uuid.UUID, terminal_id: uuid.UUID, amount_fen: int
) -> asyncpg.Record:
    """Record the refund and add it to the charge's refunded total (whose CHECK caps it at the charge)."""
    row = await uow.fetchrow(
        """WITH counted AS (
               UPDATE medical_charges SET refunded_fen = refunded_fen + $4 WHERE person_id = $1 AND id = $2
           )
           INSERT INTO medical_refunds AS r (person_id, charge_id, terminal_id, amount_fen) VALUES ($1, $2, $3, $4)
           RETURNING r.id, r.created_at""",
        person_id,
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


async def entries(db: Db, person_id: uuid.UUID, before_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """Newest first, keyset-paged on the transfer id; amounts signed from the cardholder's side, and
    the balance after each (the running sum in id order, which is commit order for one account)."""
    return await db.fetch(
        """WITH account AS (SELECT id FROM ledger_accounts WHERE person_id = $1 AND kind = 'medical'),
                moves AS (
                    SELECT t.id, t.kind, t.reference, t.created_at, t.amount_fen
                    FROM ledger_transfers t JOIN account a ON t.credit_account = a.id
                    WHERE t.person_id = $1
                    UNION ALL
                    SELECT t.id, t.kind, t.reference, t.created_at, -t.amount_fen
                    FROM ledger_transfers t JOIN account a ON t.debit_account = a.id
                    WHERE t.person_id = $1
                ),
                running AS (SELECT m.*, sum(m.amount_fen) OVER (ORDER BY m.id) AS balance_after_fen FROM moves m)
           SELECT r.id, r.kind, r.amount_fen, r.balance_after_fen::bigint AS balance_after_fen, r.created_at,
                  coalesce(c.id, rc.id) AS charge_id, coalesce(c.description, rc.description) AS description,
                  t.merchant, a.year
           FROM running r
           LEFT JOIN medical_allocations a ON r.kind = 'allocation' AND a.person_id = $1 AND a.id = r.reference
           LEFT JOIN medical_charges c ON r.kind = 'charge' AND c.person_id = $1 AND c.id = r.reference
           LEFT JOIN medical_refunds f ON r.kind = 'refund' AND f.person_id = $1 AND f.id = r.reference
           LEFT JOIN medical_charges rc ON rc.person_id = $1 AND rc.id = f.charge_id
           LEFT JOIN terminals t ON t.id = coalesce(c.terminal_id, f.terminal_id)
           WHERE $2::uuid IS NULL OR r.id < $2
           ORDER BY r.id DESC LIMIT $3""",
        person_id,
        before_id,
        limit,
    )


# -- settlement and reconciliation ---------------------------------------------------------------
async def lock_system_side(uow: UnitOfWork) -> None:
    """Serialise settlements (one carry of a clearing account at a time): the fund's row, opened on
    first use."""
    await uow.execute("INSERT INTO ledger_system_accounts (kind) VALUES ('fund') ON CONFLICT DO NOTHING")
    await uow.execute("SELECT 1 FROM ledger_system_accounts WHERE kind = 'fund' FOR UPDATE")


async def unsettled(uow: UnitOfWork, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    """Clearing accounts whose balance moved since their last carry, in (person, id) order after `after`.
    No lock: a balance read is a committed one, and the carry records exactly the balance it read."""
    return await uow.fetch(
        """SELECT person_id, id, kind, terminal_id, balance_fen, settled_fen FROM ledger_accounts
           WHERE kind <> 'medical' AND balance_fen <> settled_fen
             AND ($1::uuid IS NULL OR (person_id, id) > ($1, $2))
           ORDER BY person_id, id LIMIT $3""",
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def carry(uow: UnitOfWork, accounts: list[asyncpg.Record]) -> int:
    """Carry each clearing account's balance, as read, into its system account: the account's settled
    total moves to that balance (compare-and-set on the total read, so a carry is never made twice),
    a settlement row records the difference, and the system account's balance gains it; all in the
    caller's transaction. The number of accounts carried.

    One single-row statement per account (pipelined), in (person, id) order, the order in which
    charges, refunds and allocations lock a person's accounts too: whoever waits for whom, no cycle
    (a deadlock) can form. On Citus each statement goes to the person's shard."""
    await uow.execute(
        """INSERT INTO ledger_system_accounts (kind, terminal_id)
           SELECT DISTINCT 'merchant', t FROM unnest($1::uuid[]) t WHERE t IS NOT NULL
           ON CONFLICT DO NOTHING""",
        [a["terminal_id"] for a in accounts],
    )
    carried = await uow.conn.fetchmany(
        """UPDATE ledger_accounts AS a SET settled_fen = $4
           WHERE a.person_id = $1 AND a.id = $2 AND a.settled_fen = $3
           RETURNING a.person_id, a.id, a.terminal_id, $4::bigint AS through, ($4 - $3)::bigint AS amount_fen""",
        [(a["person_id"], a["id"], a["settled_fen"], a["balance_fen"]) for a in accounts],
    )
    if not carried:
        return 0
    await uow.execute(
        """WITH v AS (
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::bigint[])
                   v (person_id, clearing_account, terminal_id, through, amount_fen)
           ), lines AS (
               INSERT INTO ledger_settlements AS l (person_id, clearing_account, system_account, through_fen, amount_fen)
               SELECT v.person_id, v.clearing_account, s.id, v.through, v.amount_fen
               FROM v JOIN ledger_system_accounts s
                 ON s.terminal_id IS NOT DISTINCT FROM v.terminal_id
                AND s.kind = CASE WHEN v.terminal_id IS NULL THEN 'fund' ELSE 'merchant' END
               RETURNING l.system_account, l.amount_fen
           )
           UPDATE ledger_system_accounts s SET balance_fen = s.balance_fen + d.amount_fen
           FROM (SELECT system_account, sum(amount_fen)::bigint AS amount_fen FROM lines GROUP BY system_account) d
           WHERE s.id = d.system_account""",
        [c["person_id"] for c in carried],
        [c["id"] for c in carried],
        [c["terminal_id"] for c in carried],
        [c["through"] for c in carried],
        [c["amount_fen"] for c in carried],
    )
    return len(carried)


# Each row a place the ledger is summed over (a person, a shard, the whole) and a rule: the sums
# that must agree. `shard` is the person's shard on Citus, 0 on one PostgreSQL.
RECONCILE_SQL = """
    WITH people AS (
        SELECT person_id, {shard} AS shard,
               sum(balance_fen) AS total,
               sum(balance_fen) FILTER (WHERE kind = 'medical') AS medical,
               sum(balance_fen - settled_fen) FILTER (WHERE kind <> 'medical') AS unsettled,
               sum(settled_fen) AS settled
        FROM ledger_accounts GROUP BY person_id
    ), lines AS (
        SELECT person_id, sum(amount_fen) AS carried FROM ledger_settlements GROUP BY person_id
    )
    SELECT 'account' AS place, a.id::text AS name, a.balance_fen - coalesce(r.replayed, 0) AS off_fen,
           'an account''s balance is the replay of its transfers' AS rule
    FROM ledger_accounts a
    LEFT JOIN (
        SELECT person_id, account, sum(amount_fen) AS replayed
        FROM (SELECT person_id, credit_account AS account, amount_fen FROM ledger_transfers
              UNION ALL SELECT person_id, debit_account, -amount_fen FROM ledger_transfers) m
        GROUP BY person_id, account
    ) r ON r.person_id = a.person_id AND r.account = a.id
    WHERE a.balance_fen <> coalesce(r.replayed, 0)
    UNION ALL
    SELECT 'person', p.person_id::text, p.total, 'the balances of a person''s accounts sum to 0'
    FROM people p WHERE p.total <> 0
    UNION ALL
    SELECT 'person', coalesce(p.person_id, l.person_id)::text, coalesce(p.settled, 0) - coalesce(l.carried, 0),
           'a person''s settled totals are the settlements carried'
    FROM people p FULL JOIN lines l ON l.person_id = p.person_id
    WHERE coalesce(p.settled, 0) <> coalesce(l.carried, 0)
    UNION ALL
    SELECT 'shard', s.shard::text, s.total, 'the balances on a shard sum to 0'
    FROM (SELECT shard, sum(total) AS total FROM people GROUP BY shard) s WHERE s.total <> 0
    UNION ALL
    SELECT 'system', a.id::text, a.balance_fen - coalesce(l.carried, 0),
           'a system account''s balance is the settlements carried into it'
    FROM ledger_system_accounts a
    LEFT JOIN (SELECT system_account, sum(amount_fen) AS carried FROM ledger_settlements GROUP BY system_account) l
      ON l.system_account = a.id
    WHERE a.balance_fen <> coalesce(l.carried, 0)
    UNION ALL
    SELECT 'total', '', t.off, 'medical balances, unsettled clearing and the system accounts sum to 0'
    FROM (SELECT coalesce((SELECT sum(medical) + sum(unsettled) FROM people), 0)
               + coalesce((SELECT sum(balance_fen) FROM ledger_system_accounts), 0) AS off) t
    WHERE t.off <> 0"""
