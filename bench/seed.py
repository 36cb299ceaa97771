"""Synthetic pensioners straight into the tables, for runs too large to import row by row.

Every tenth person has never certified; the rest are certified for a year. Amounts vary by person
so that a wrong total cannot come out right by accident.
"""

from __future__ import annotations

from typing import Any

from infra.crypto import FieldCipher

ACCOUNT = "6222020200112233445"


async def seed_pensioners(conn: Any, count: int, cipher: FieldCipher) -> int:
    """`count` persons with active entitlements; returns what the certified ones are owed a month, in fen."""
    # One ciphertext for all: its context binds it to the column, and the bank file decrypts it.
    account = cipher.encrypt_text(ACCOUNT, "pension_entitlements.bank_account")
    # Entitlements for these persons only: a benchmark may have put other persons in the table.
    owed: int = await conn.fetchval(
        """WITH seeded AS (
               INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date, phone,
                                    region, certified_until)
               SELECT sha256(('seed:' || g)::bytea), '\\x00'::bytea,
                      '110101********' || lpad((g % 10000)::text, 4, '0'), '测试' || g,
                      date '1950-01-01' + (g % 3650), '139' || lpad(g::text, 8, '0'), '110101',
                      CASE WHEN g % 10 <> 0 THEN current_date + 365 END
               FROM generate_series(1, $1) g
               RETURNING id, national_id_hash, certified_until
           ), looked_up AS (
               INSERT INTO person_national_ids (national_id_hash, person_id) SELECT national_id_hash, id FROM seeded
           ), entitled AS (
               INSERT INTO pension_entitlements (person_id, monthly_amount_fen, bank_account_enc,
                                                 bank_account_masked, start_month)
               SELECT id, 100000 + (get_byte(national_id_hash, 0) * 256 + get_byte(national_id_hash, 1)), $2,
                      '***************3445', date '2010-01-01'
               FROM seeded
               RETURNING person_id, monthly_amount_fen
           )
           SELECT coalesce(sum(e.monthly_amount_fen), 0)::bigint
           FROM entitled e JOIN seeded s ON s.id = e.person_id WHERE s.certified_until IS NOT NULL""",
        count,
        account,
    )
    return owed
