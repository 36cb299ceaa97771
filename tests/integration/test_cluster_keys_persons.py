"""Migration 0021 (issue 23) on a database that already holds persons: each national ID gets its lookup
row, and the keys it changes leave the stored rows as they were."""

from __future__ import annotations

import asyncpg

from infra.migrate import migration_files
from tests.conftest import Embedded

_DB = "cluster_keys_persons"


async def test_the_migration_backfills_the_national_id_lookup_from_the_stored_persons(embedded: Embedded) -> None:
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{_DB}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{_DB}"')
    conn = await asyncpg.connect(embedded.postgres.url("postgres", _DB))
    try:
        files = migration_files()
        ours = next(p for p in files if p.name == "0021_cluster_keys_persons.sql")
        for path in files[: files.index(ours)]:
            await conn.execute(path.read_text())
        person_ids = [
            await conn.fetchval(
                """INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date,
                                        phone, region) VALUES ($1, '\\x00', '110101********0000', 'x', '1950-01-01',
                                        '13900000000', '110101') RETURNING id""",
                bytes([n]) * 32,
            )
            for n in (1, 2)
        ]
        account = await conn.fetchval(
            "INSERT INTO accounts (phone, person_id) VALUES ('13900000000', $1) RETURNING id", person_ids[0]
        )
        await conn.execute(
            "INSERT INTO biometric_consents (person_id, account_id, text_version) VALUES ($1, $2, 'v')",
            person_ids[0],
            account,
        )

        await conn.execute(ours.read_text())

        lookup = {r["national_id_hash"]: r["person_id"] for r in await conn.fetch("SELECT * FROM person_national_ids")}
        assert lookup == {bytes([1]) * 32: person_ids[0], bytes([2]) * 32: person_ids[1]}
        assert await conn.fetchval("SELECT count(*) FROM biometric_consents WHERE person_id = $1", person_ids[0]) == 1
        key = await conn.fetchval(
            """SELECT array_agg(a.attname::text ORDER BY k.i) FROM pg_constraint c
               CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k (n, i)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
               WHERE c.conrelid = 'biometric_consents'::regclass AND c.contype = 'p'"""
        )
        assert key == ["person_id", "id"]
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{_DB}" WITH (FORCE)')
        await admin.close()
