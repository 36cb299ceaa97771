"""Migrations: all apply to an empty database, in order, and a second run changes nothing."""

from __future__ import annotations

import asyncio

import asyncpg

from infra.config import APP_ROLE
from infra.migrate import migrate, migration_files
from tests.conftest import Embedded


async def test_all_migrations_apply_to_an_empty_database_once(embedded: Embedded) -> None:
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute('DROP DATABASE IF EXISTS "empty_migrations" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "empty_migrations"')
    url = embedded.postgres.url("postgres", "empty_migrations")
    try:
        # Two migrators at once (two deploys starting together): the advisory lock serialises them.
        first, second = await asyncio.gather(migrate(url, APP_ROLE), migrate(url, APP_ROLE))
        names = [p.name for p in migration_files()]
        assert sorted([*first, *second]) == names
        assert await migrate(url, APP_ROLE) == []
        conn = await asyncpg.connect(url)
        try:
            recorded = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")]
            assert recorded == names
            assert await conn.fetchval("SELECT to_regclass('pgqueuer') IS NOT NULL")
        finally:
            await conn.close()
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "empty_migrations" WITH (FORCE)')
        await admin.close()
