"""Migration 0022 on a database that holds cards: each card's number gets its lookup row, and the QR tokens
and recovery approvals of a card take its person."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from infra.migrate import migration_files
from infra.placement import read_schema
from tests.conftest import Embedded

MIGRATION = "0022_cluster_keys_cards.sql"


async def test_the_rows_of_a_card_take_its_person(embedded: Embedded) -> None:
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute('DROP DATABASE IF EXISTS "cards_keys_migration" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "cards_keys_migration"')
    conn = await asyncpg.connect(embedded.postgres.url("postgres", "cards_keys_migration"))
    try:
        files = migration_files()
        for path in files[: [p.name for p in files].index(MIGRATION)]:
            await conn.execute(path.read_text())
        people = [uuid.uuid4() for _ in range(3)]
        cards = {}
        for n, person_id in enumerate(people):
            await conn.execute(
                """INSERT INTO persons (id, national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                        phone, region)
                   VALUES ($1, $2, '\\x00', '110101********0000', 'Before', '1950-01-01', $3, '110101')""",
                person_id,
                person_id.bytes,
                f"1390000000{n}",
            )
            cards[person_id] = await conn.fetchval(
                "INSERT INTO cards (person_id, card_number, status) VALUES ($1, $2, 'active') RETURNING id",
                person_id,
                f"{n:012d}",
            )
        session_id = await conn.fetchval(
            """INSERT INTO sessions (principal_kind, principal_id, expires_at)
               VALUES ('account', $1, now() + interval '1 day') RETURNING id""",
            uuid.uuid4(),
        )
        for person_id in people[:2]:
            await conn.execute(
                """INSERT INTO qr_tokens (id, card_id, session_id, expires_at)
                   VALUES ($1, $2, $3, now() + interval '1 minute')""",
                uuid.uuid4(),
                cards[person_id],
                session_id,
            )
        await conn.execute(
            "INSERT INTO card_recovery_approvals (card_id, approved_by, reason) VALUES ($1, 'operator:x', 'seen')",
            cards[people[2]],
        )

        await conn.execute((files[0].parent / MIGRATION).read_text())

        numbers = {r["card_number"]: r["person_id"] for r in await conn.fetch("SELECT * FROM card_numbers")}
        assert numbers == {f"{n:012d}": person_id for n, person_id in enumerate(people)}
        tokens = await conn.fetch("SELECT person_id, card_id FROM qr_tokens")
        assert sorted((r["person_id"], r["card_id"]) for r in tokens) == sorted((p, cards[p]) for p in people[:2])
        approval = await conn.fetchrow("SELECT person_id, card_id FROM card_recovery_approvals")
        assert approval is not None
        assert (approval["person_id"], approval["card_id"]) == (people[2], cards[people[2]])
        keys = {r.name: (r.columns, r.references, r.referenced_columns) for r in await read_schema(conn)}
        for table in ("qr_tokens", "card_recovery_approvals", "medical_charges"):
            assert keys[f"{table}_card_id_fkey"] == (("person_id", "card_id"), "cards", ("person_id", "id"))
        assert "qr_tokens_session_id_fkey" not in keys
        # The composite key holds: a token for a card of another person is refused.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                """INSERT INTO qr_tokens (id, person_id, card_id, session_id, expires_at)
                   VALUES ($1, $2, $3, $4, now())""",
                uuid.uuid4(),
                people[0],
                cards[people[1]],
                session_id,
            )
    finally:
        await conn.close()
        await admin.execute('DROP DATABASE IF EXISTS "cards_keys_migration" WITH (FORCE)')
        await admin.close()
