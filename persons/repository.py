"""SQL for persons, their pension entitlements and their cards."""

from __future__ import annotations

import uuid
from datetime import date
from typing import NamedTuple

import asyncpg

from cards.numbers import card_number
from infra.db import UnitOfWork


class PersonRow(NamedTuple):
    national_id_hash: bytes
    national_id_enc: bytes
    national_id_masked: str
    name: str
    birth_date: date
    phone: str
    region: str
    locale: str
    reference_photo_key: str | None


async def find_by_national_id_hash(uow: UnitOfWork, national_id_hash: bytes) -> asyncpg.Record | None:
    return await uow.fetchrow(
        """SELECT p.id, p.name, p.birth_date, p.phone, p.region, p.locale, p.reference_photo_key,
                  e.monthly_amount_fen, e.bank_account_enc, e.start_month
           FROM persons p LEFT JOIN pension_entitlements e ON e.person_id = p.id
           WHERE p.national_id_hash = $1""",
        national_id_hash,
    )


async def upsert_person(uow: UnitOfWork, row: PersonRow) -> uuid.UUID:
    """One record per national ID: a second import updates it (a photo-less row keeps the old photo)."""
    person_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                phone, region, locale, reference_photo_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (national_id_hash) DO UPDATE SET
               name = excluded.name, birth_date = excluded.birth_date, phone = excluded.phone,
               region = excluded.region, locale = excluded.locale,
               reference_photo_key = coalesce(excluded.reference_photo_key, persons.reference_photo_key),
               updated_at = now()
           RETURNING id""",
        *row,
    )
    return person_id


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
