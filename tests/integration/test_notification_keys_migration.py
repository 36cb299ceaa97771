"""Migration 0025 on data written before it: notices, deliveries, devices and events get their person
in their keys, person-less events move to the system's table, and a device whose token had moved to
someone else stays, retired, with the person its deliveries were for."""

from __future__ import annotations

import uuid

import asyncpg

from infra.migrate import migration_files
from infra.placement import read_schema, violations
from tests.conftest import Embedded

MIGRATION = "0025_cluster_keys_notifications.sql"
DATABASE = "notification_keys_migration"
TABLES = {"domain_events", "notifications", "deliveries", "devices", "push_tokens", "system_events"}


async def _person(conn: asyncpg.Connection, n: int) -> uuid.UUID:
    person: uuid.UUID = await conn.fetchval(
        """INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date, phone, region)
           VALUES ($1, '\\x00', '110101********000' || $2, 'p' || $2, '1950-01-01', '1380000000' || $2, '110101')
           RETURNING id""",
        bytes([n]),
        str(n),
    )
    return person


async def test_existing_notices_devices_and_events_are_keyed_by_their_person(embedded: Embedded) -> None:
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    conn = await asyncpg.connect(embedded.postgres.url("postgres", DATABASE))
    try:
        files = migration_files()
        for path in files[: [p.name for p in files].index(MIGRATION)]:
            await conn.execute(path.read_text())
        first, second = await _person(conn, 1), await _person(conn, 2)
        await conn.execute(
            """INSERT INTO domain_events (kind, person_id, payload, dedupe_key, created_at) VALUES
                   ('card.reported_lost', $1, '{}', 'a', now() - interval '2 minutes'),
                   ('disbursement.completed', NULL, '{"run_id": "r"}', 'run', now() - interval '1 minute'),
                   ('card.recovered', $1, '{}', 'b', now())""",
            first,
        )
        kept = await conn.fetchval(
            """INSERT INTO devices (person_id, push_token, platform, locale, app_version)
               VALUES ($1, 'kept', 'android', 'zh-CN', '1') RETURNING id""",
            first,
        )
        moved = await conn.fetchval(
            """INSERT INTO devices (person_id, push_token, platform, locale, app_version)
               VALUES ($1, 'moved', 'ios', 'en', '1') RETURNING id""",
            first,
        )
        notice = await conn.fetchval(
            """INSERT INTO notifications (person_id, kind, params, urgent, dedupe_key, shown_from)
               VALUES ($1, 'card.reported_lost', '{}', true, 'a', now()) RETURNING id""",
            first,
        )
        await conn.execute(
            """INSERT INTO deliveries (notification_id, channel, device_id, next_attempt_at)
               VALUES ($1, 'push', $2, now()), ($1, 'push', $3, now())""",
            notice,
            kept,
            moved,
        )
        # Before 0025 a token registered by someone else took its row along, deliveries and all.
        await conn.execute("UPDATE devices SET person_id = $1 WHERE id = $2", second, moved)

        await conn.execute(files[[p.name for p in files].index(MIGRATION)].read_text())

        events = await conn.fetch("SELECT id, person_id, dedupe_key FROM domain_events ORDER BY id")
        assert [(e["person_id"], e["dedupe_key"]) for e in events] == [(first, "a"), (first, "b")]
        assert all(e["id"].version == 7 for e in events)
        system = await conn.fetchrow("SELECT kind, payload, dedupe_key FROM system_events")
        assert system is not None
        assert (system["kind"], system["dedupe_key"]) == ("disbursement.completed", "run")
        deliveries = await conn.fetch("SELECT person_id, device_id FROM deliveries ORDER BY device_id = $1", moved)
        assert [(d["person_id"], d["device_id"]) for d in deliveries] == [(first, kept), (first, moved)]
        devices = await conn.fetch(
            "SELECT person_id, id, deactivated_reason FROM devices ORDER BY id, deactivated_reason NULLS FIRST"
        )
        assert sorted((d["person_id"], d["id"], d["deactivated_reason"]) for d in devices) == sorted(
            [(first, kept, None), (second, moved, None), (first, moved, "moved")]
        )
        tokens = await conn.fetch("SELECT push_token, person_id, device_id FROM push_tokens")
        assert sorted(tuple(t) for t in tokens) == [("kept", first, kept), ("moved", second, moved)]
        # The same dedupe key is now another person's own.
        await conn.execute(
            """INSERT INTO domain_events (kind, person_id, payload, dedupe_key) VALUES ('card.recovered', $1, '{}', 'a')""",
            second,
        )
        broken = violations(await read_schema(conn))
        assert {table: broken[table] for table in TABLES if table in broken} == {}
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.close()
