"""The schema the migrations make, judged against Citus's rules for each table's place (issue 23):
no table breaks one, so a cluster distributes every person table (infra.placement.apply)."""

from __future__ import annotations

import asyncpg

from infra.placement import PLACEMENTS, read_schema, violations


async def test_no_table_breaks_a_rule_of_its_place(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        broken = violations(await read_schema(conn))
    assert broken == {}
    assert {p.table for p in PLACEMENTS} <= {
        row["relname"]
        for row in await pool.fetch("SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace")
    }
