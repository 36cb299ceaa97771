"""SQL for the e-card and its QR tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from infra.db import Db, UnitOfWork

_CARD_COLUMNS = """c.id, c.card_number, c.status, c.issued_on, c.activated_at, c.status_changed_at,
                   p.id AS person_id, p.name, p.national_id_masked, p.phone, p.vital_status"""


async def card_of_person(db: Db, person_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"""SELECT {_CARD_COLUMNS} FROM cards c JOIN persons p ON p.id = c.person_id
            WHERE c.person_id = $1 {"FOR UPDATE OF c" if lock else ""}""",
        person_id,
    )


async def person_for_activation(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    # The id through the national ID lookup table, then the person by id: each statement on one shard.
    person_id = await uow.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    if person_id is None:
        return None
    return await uow.fetchrow(
        """SELECT id, phone, vital_status, coalesce(certified_until >= current_date, false) AS certified
           FROM persons WHERE id = $1""",
        person_id,
    )


async def link_account(uow: UnitOfWork, account_id: uuid.UUID, person: asyncpg.Record) -> None:
    """Link the account to `person`, a row of persons this transaction has read. accounts are the
    coordinator's and cannot refer to persons (distributed) by a foreign key: taking the row, not an
    id, is what keeps an account from being linked to a person who does not exist."""
    # A person has one signed-in account: a new phone number takes the link over from the old one.
    person_id = person["id"]
    await uow.execute("UPDATE accounts SET person_id = NULL WHERE person_id = $1 AND id <> $2", person_id, account_id)
    await uow.execute("UPDATE accounts SET person_id = $2 WHERE id = $1", account_id, person_id)


async def set_status(uow: UnitOfWork, person_id: uuid.UUID, card_id: uuid.UUID, status: str) -> datetime | None:
    """Change the status; return the activation time (set on the first activation)."""
    activated_at: datetime | None = await uow.fetchval(
        """UPDATE cards SET status = $3, status_changed_at = now(),
               activated_at = CASE WHEN $3 = 'active' THEN coalesce(activated_at, (SELECT now())) ELSE activated_at END
           WHERE person_id = $1 AND id = $2 RETURNING activated_at""",
        person_id,
        card_id,
        status,
    )
    return activated_at


async def recovery_proof(db: Db, person_id: uuid.UUID, card_id: uuid.UUID, since: datetime) -> str | None:
    """What proves, since `since` (the loss report), that the person is cancelling it: a face check
    filmed and passed since ('face_check'), or an operator who vouched for them since ('operator')."""
    proof: str | None = await db.fetchval(
        """SELECT CASE
               WHEN EXISTS (SELECT 1 FROM certification_checks
                            WHERE person_id = $1 AND status = 'passed' AND submitted_at > $3) THEN 'face_check'
               WHEN EXISTS (SELECT 1 FROM card_recovery_approvals
                            WHERE person_id = $1 AND card_id = $2 AND approved_at > $3) THEN 'operator'
           END""",
        person_id,
        card_id,
        since,
    )
    return proof


async def approve_recovery(
    uow: UnitOfWork, person_id: uuid.UUID, card_id: uuid.UUID, actor: str, reason: str
) -> datetime:
    approved_at: datetime = await uow.fetchval(
        """INSERT INTO card_recovery_approvals (person_id, card_id, approved_by, reason) VALUES ($1, $2, $3, $4)
           RETURNING approved_at""",
        person_id,
        card_id,
        actor,
        reason,
    )
    return approved_at


# Minting is one statement on the hot path: a row only for an active card of this person. (The
# alias: without it, Citus loses the table of a prepared INSERT ... SELECT's RETURNING.) The session
# has no foreign key (sessions are the coordinator's): it is the caller's, resolved as live for this
# request (auth.repository.ACCOUNT_SESSION_SQL), and CONSUME_QR_SQL's caller checks it again at use.
MINT_QR_SQL = """
    INSERT INTO qr_tokens AS q (id, person_id, card_id, session_id, expires_at)
    SELECT $1, c.person_id, c.id, $2, $3 FROM cards c WHERE c.person_id = $4 AND c.status = 'active'
    RETURNING q.card_id"""

# One statement, on the person's shard (every table is held to person $1): exactly one concurrent
# consumer wins the row lock and sees consumed_at IS NULL. The card must be active at the moment of use.
CONSUME_QR_SQL = """
    WITH consumed AS (
        UPDATE qr_tokens q SET consumed_at = now(), consumed_by = $3
        WHERE q.person_id = $1 AND q.id = $2 AND q.consumed_at IS NULL AND q.expires_at > now()
          AND EXISTS (SELECT 1 FROM cards c
                      WHERE c.person_id = q.person_id AND c.id = q.card_id AND c.status = 'active')
        RETURNING q.id, q.person_id, q.card_id, q.session_id
    )
    SELECT consumed.id AS qr_token_id, consumed.session_id, c.id AS card_id, p.id AS person_id,
           c.card_number, c.status, p.name, p.national_id_masked
    FROM consumed JOIN cards c ON c.person_id = consumed.person_id AND c.id = consumed.card_id
    JOIN persons p ON p.id = consumed.person_id
    WHERE c.person_id = $1 AND p.id = $1"""

# The minting session still signed in, read in the consumption's transaction (sessions are the
# coordinator's, so not in CONSUME_QR_SQL, which stays on the person's shard).
LIVE_SESSION_SQL = "SELECT true FROM sessions WHERE id = $1 AND revoked_at IS NULL"

# Only on the failure path: why the token was refused.
QR_REFUSAL_SQL = """
    SELECT q.consumed_at IS NOT NULL AS used, q.expires_at <= now() AS expired
    FROM qr_tokens q
    WHERE q.person_id = $1 AND q.id = $2"""
