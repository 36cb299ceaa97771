"""Migration 0023 on a database that already holds checks: challenges, checks and face templates
keyed by their person, and a replay of another person's check kept with that person beside it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from infra import migrate as migrations
from infra.config import APP_ROLE
from infra.placement import read_schema, violations
from tests.conftest import Embedded

DATABASE = "cert_keys_migration"
MINE = {"certification_challenges", "certification_checks", "face_templates"}


async def _person(conn: asyncpg.Connection, n: int) -> uuid.UUID:
    person_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date, phone, region)
           VALUES ($1, $1, '1101**********001X', $2, '1950-01-01', $3, '110101') RETURNING id""",
        f"hash-{n}".encode(),
        f"Person {n}",
        f"1380000000{n}",
    )
    return person_id


async def _check(
    conn: asyncpg.Connection, person_id: uuid.UUID, replay_of: uuid.UUID | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    challenge_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO certification_challenges (id, person_id, actions, upload_prefix, expires_at)
           VALUES ($1, $2, '{blink}', 'uploads/x/', now())""",
        challenge_id,
        person_id,
    )
    check_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO certification_checks (person_id, challenge_id, actions, media_kind, media_keys, media_bytes,
                                             replay_of)
           VALUES ($1, $2, '{blink}', 'video', '{uploads/x/video}', 1, $3) RETURNING id""",
        person_id,
        challenge_id,
        replay_of,
    )
    return challenge_id, check_id


async def test_existing_checks_are_keyed_by_their_person_and_keep_their_replays(
    embedded: Embedded, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    url = embedded.postgres.url("postgres", DATABASE)
    try:
        # The schema before the key rework (main at 0020), holding data; then every migration since.
        before = [p for p in migrations.migration_files() if p.name < "0021"]
        monkeypatch.setattr(migrations, "migration_files", lambda: before)
        await migrations.migrate(url, APP_ROLE)
        monkeypatch.undo()
        conn = await asyncpg.connect(url)
        try:
            ann, bo = await _person(conn, 1), await _person(conn, 2)
            _, original = await _check(conn, ann)
            _, own_copy = await _check(conn, ann, replay_of=original)
            bos_challenge, their_copy = await _check(conn, bo, replay_of=original)
            await conn.execute(
                "INSERT INTO face_templates (person_id, check_id, template) VALUES ($1, $2, $3::vector)",
                bo,
                their_copy,
                "[" + ",".join(["0.1"] * 128) + "]",
            )

            assert "0023_cluster_keys_certification.sql" in await migrations.migrate(url, APP_ROLE)

            rows = await conn.fetch("SELECT id, person_id, replay_of, replay_of_person FROM certification_checks")
            assert {r["id"]: (r["replay_of"], r["replay_of_person"]) for r in rows} == {
                original: (None, None),
                own_copy: (original, ann),
                their_copy: (original, ann),  # another person's recording: its person beside it
            }
            assert not MINE & set(violations(await read_schema(conn)))
            # The keys now hold the person: a check of Ann's cannot name Bo's challenge, nor a template
            # of Ann's Bo's check; a replay names its check's person.
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    "UPDATE certification_checks SET challenge_id = $2 WHERE id = $1", own_copy, bos_challenge
                )
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute(
                    "INSERT INTO face_templates (person_id, check_id, template) VALUES ($1, $2, $3::vector)",
                    ann,
                    their_copy,
                    "[" + ",".join(["0.2"] * 128) + "]",
                )
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("UPDATE certification_checks SET replay_of_person = NULL WHERE id = $1", their_copy)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.close()
