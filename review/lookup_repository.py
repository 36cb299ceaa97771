"""SQL for what the console shows beside the review queue: people and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from infra.db import Db

_PERSON = """SELECT p.id, p.name, p.national_id_masked, p.phone, p.region, p.birth_date, p.vital_status,
                    p.date_of_death, p.certified_until, c.card_number, c.status AS card_status, c.issued_on,
                    e.monthly_amount_fen, e.status AS pension_status, e.bank_account_masked
             FROM persons p LEFT JOIN cards c ON c.person_id = p.id
             LEFT JOIN pension_entitlements e ON e.person_id = p.id"""


async def persons_by_national_id_hash(db: Db, national_id_hash: bytes) -> list[asyncpg.Record]:
    # The id through the national ID lookup table, then the person by id: each statement on one shard.
    person_id = await db.fetchval(
        "SELECT person_id FROM person_national_ids WHERE national_id_hash = $1", national_id_hash
    )
    return [] if person_id is None else await db.fetch(f"{_PERSON} WHERE p.id = $1", person_id)


async def persons_by_phone(db: Db, phone: str) -> list[asyncpg.Record]:
    return await db.fetch(f"{_PERSON} WHERE p.phone = $1 ORDER BY p.name LIMIT 50", phone)


async def persons_by_card_number(db: Db, card_number: str) -> list[asyncpg.Record]:
    # The person through the card number lookup table, then the person by id: each statement on one shard.
    person_id = await db.fetchval("SELECT person_id FROM card_numbers WHERE card_number = $1", card_number)
    return [] if person_id is None else await db.fetch(f"{_PERSON} WHERE p.id = $1", person_id)


async def person(db: Db, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"{_PERSON} WHERE p.id = $1", person_id)


async def checks_of(db: Db, person_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, status, reasons, submitted_at, decided_at, decided_by, review_decision
           FROM certification_checks WHERE person_id = $1 ORDER BY submitted_at DESC LIMIT $2""",
        person_id,
        limit,
    )


async def notifications_of(db: Db, person_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT n.id, n.kind, n.params, n.created_at, n.shown_from, n.read_at,
                  coalesce(array_agg(d.channel || ':' || d.state ORDER BY d.channel, d.state)
                           FILTER (WHERE d.id IS NOT NULL), '{}') AS deliveries
           FROM notifications n LEFT JOIN deliveries d ON d.person_id = n.person_id AND d.notification_id = n.id
           WHERE n.person_id = $1 GROUP BY n.person_id, n.id ORDER BY n.created_at DESC, n.id DESC LIMIT $2""",
        person_id,
        limit,
    )


async def audit_page(
    db: Db,
    *,
    actor: str | None,
    action: str | None,
    subject: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, int, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first by (at, chain, seq) across the chains, from just below `before`, with the operator's name beside an operator's
    id. The WHERE holds only the filters given (not `$1 IS NULL OR ...`), so that each combination is a
    statement of its own, planned on its index (audit_log_actor_idx etc., 0018): a generic plan of the
    catch-all form cannot pick one."""
    conditions: list[str] = []
    args: list[object] = []
    for condition, value in (
        ("a.actor = ${}", actor),
        ("a.action = ${}", action),
        ("a.subject = ${}", subject),
        ("a.at >= ${}", since),
        ("a.at < ${}", until),
    ):
        if value is not None:
            args.append(value)
            conditions.append(condition.format(len(args)))
    if before is not None:
        args.extend(before)
        conditions.append(f"(a.at, a.chain, a.seq) < (${len(args) - 2}, ${len(args) - 1}, ${len(args)})")
    args.append(limit)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return await db.fetch(
        f"""SELECT a.chain, a.seq, a.at, a.actor, a.action, a.subject, a.details, o.display_name AS actor_name
            FROM audit_log a
            LEFT JOIN operators o ON split_part(a.actor, ':', 1) IN ('operator', 'auditor', 'admin')
                 AND o.id::text = split_part(a.actor, ':', 2)
            {where} ORDER BY a.at DESC, a.chain DESC, a.seq DESC LIMIT ${len(args)}""",
        *args,
    )


async def audit_row_at(db: Db, chain: int, seq: int) -> datetime | None:
    """When row `chain/seq` was written (a page's position in the log); None when there is no such row."""
    at: datetime | None = await db.fetchval("SELECT at FROM audit_log WHERE chain = $1 AND seq = $2", chain, seq)
    return at


async def audit_actions(db: Db) -> list[str]:
    """Every action in the log, in order: one probe of audit_log_action_idx per action (a skip scan),
    not a pass over the rows."""
    return [
        r["action"]
        for r in await db.fetch(
            """WITH RECURSIVE actions (action) AS (
                   (SELECT action FROM audit_log ORDER BY action LIMIT 1)
                   UNION ALL
                   SELECT (SELECT l.action FROM audit_log l WHERE l.action > a.action ORDER BY l.action LIMIT 1)
                   FROM actions a WHERE a.action IS NOT NULL
               )
               SELECT action FROM actions WHERE action IS NOT NULL"""
        )
    ]
