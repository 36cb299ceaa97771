"""SQL for what the console shows beside the review queue: people and the audit log."""

from __future__ import annotations

import uuid

import asyncpg

from infra.db import Db

_PERSON = """SELECT p.id, p.name, p.national_id_masked, p.phone, p.region, p.birth_date, p.vital_status,
                    p.date_of_death, p.certified_until, c.card_number, c.status AS card_status, c.issued_on,
                    e.monthly_amount_fen, e.status AS pension_status, e.bank_account_masked
             FROM persons p LEFT JOIN cards c ON c.person_id = p.id
             LEFT JOIN pension_entitlements e ON e.person_id = p.id"""


async def persons_by_national_id_hash(db: Db, national_id_hash: bytes) -> list[asyncpg.Record]:
    return await db.fetch(f"{_PERSON} WHERE p.national_id_hash = $1", national_id_hash)


async def persons_by_phone(db: Db, phone: str) -> list[asyncpg.Record]:
    return await db.fetch(f"{_PERSON} WHERE p.phone = $1 ORDER BY p.name LIMIT 50", phone)


async def persons_by_card_number(db: Db, card_number: str) -> list[asyncpg.Record]:
    return await db.fetch(f"{_PERSON} WHERE c.card_number = $1", card_number)


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
           FROM notifications n LEFT JOIN deliveries d ON d.notification_id = n.id
           WHERE n.person_id = $1 GROUP BY n.id ORDER BY n.created_at DESC, n.id DESC LIMIT $2""",
        person_id,
        limit,
    )


async def audit_page(db: Db, before_id: int | None, limit: int) -> list[asyncpg.Record]:
    """Newest first, with the operator's name beside an operator's id."""
    return await db.fetch(
        """SELECT a.id, a.at, a.actor, a.action, a.subject, a.details, o.display_name AS actor_name
           FROM audit_log a
           LEFT JOIN operators o ON split_part(a.actor, ':', 1) IN ('operator', 'auditor', 'admin')
                AND o.id::text = split_part(a.actor, ':', 2)
           WHERE $1::bigint IS NULL OR a.id < $1 ORDER BY a.id DESC LIMIT $2""",
        before_id,
        limit,
    )
