"""SQL for persons, their pension entitlements and their cards."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import asyncpg

from app.cards.numbers import card_number
from infra.db import UnitOfWork


async def find_by_national_id_hash(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    return await uow.fetchrow(
        """SELECT p.id, p.name, p.birth_date, p.phone, p.region, p.locale, p.reference_photo_key,
                  e.monthly_amount_fen, e.bank_account_enc, e.start_month
           FROM persons p LEFT JOIN pension_entitlements e ON e.person_id = p.id
           WHERE p.national_id_hash = $1
           FOR UPDATE OF p""",
        national_id_hash,
    )


async def insert_person(uow: UnitOfWork, fields: dict[str, Any]) -> uuid.UUID:
    person_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                phone, region, locale, reference_photo_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
        fields["national_id_hash"],
        fields["national_id_enc"],
        fields["national_id_masked"],
        fields["name"],
        fields["birth_date"],
        fields["phone"],
        fields["region"],
        fields["locale"],
        fields["reference_photo_key"],
    )
    return person_id


async def update_person(uow: UnitOfWork, person_id: uuid.UUID, fields: dict[str, Any]) -> None:
    await uow.execute(
        """UPDATE persons SET name = $2, birth_date = $3, phone = $4, region = $5, locale = $6,
                              reference_photo_key = coalesce($7, reference_photo_key), updated_at = now()
           WHERE id = $1""",
        person_id,
        fields["name"],
        fields["birth_date"],
        fields["phone"],
        fields["region"],
        fields["locale"],
        fields["reference_photo_key"],
    )


async def upsert_entitlement(
    uow: UnitOfWork, person_id: uuid.UUID, amount_fen: int, account_enc: bytes, account_masked: str, start: date
) -> None:
    await uow.execute(
        """INSERT INTO pension_entitlements (person_id, monthly_amount_fen, bank_account_enc,
                                             bank_account_masked, start_month)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (person_id) DO UPDATE SET monthly_amount_fen = excluded.monthly_amount_fen,
               bank_account_enc = excluded.bank_account_enc, bank_account_masked = excluded.bank_account_masked,
               start_month = excluded.start_month, updated_at = now()""",
        person_id,
        amount_fen,
        account_enc,
        account_masked,
        start,
    )


async def ensure_card(uow: UnitOfWork, person_id: uuid.UUID) -> None:
    if await uow.fetchval("SELECT 1 FROM cards WHERE person_id = $1", person_id):
        return
    sequence: int = await uow.fetchval("SELECT nextval('card_number_seq')")
    await uow.execute("INSERT INTO cards (person_id, card_number) VALUES ($1, $2)", person_id, card_number(sequence))
