"""The audit chain: tampering directly in SQL, even by the database owner who recomputes hashes, is
found by `socialcard audit verify` with the chain key and the signed anchors in the object store; the
console's audit page walks only from the newest signed checkpoint on, and shows what the full walk found."""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from app.jobs import SCHEDULES, run_worker
from app.services import Services
from infra import audit, audit_checkpoints
from infra.config import APP_ROLE, Settings
from infra.db import create_pool, unit_of_work
from infra.jobs import enqueue_once
from infra.migrate import migrate, migration_files
from infra.storage import ObjectStorage
from tests.conftest import Embedded
from tests.factories import console_sign_in, run_cli, staff_member


@pytest.fixture
async def chain(pool: asyncpg.Pool) -> list[int]:
    for i in range(5):
        async with unit_of_work(pool) as uow:
            await audit.record(uow, "system:test", "test.event", f"thing:{i}", {"n": i, "text": "值"})
    return [r["id"] for r in await pool.fetch("SELECT id FROM audit_log ORDER BY id")]


async def _superuser(settings: Settings) -> asyncpg.Connection:
    conn = await asyncpg.connect(settings.migration_database_url)
    await conn.execute("SET session_replication_role = replica")  # bypasses the append-only triggers
    return conn


def _verify_cli(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = run_cli(settings, "audit", "verify")
    return status, capsys.readouterr().out


async def test_intact_chain_verifies(chain: list[int], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 0
    assert "5 row(s)" in out


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


@pytest.mark.parametrize(
    ("tamper", "broken_index"),
    [
        ("UPDATE audit_log SET details = '{\"n\": 99}' WHERE id = $1", 2),
        ("DELETE FROM audit_log WHERE id = $1", 3),  # the row after the deleted one no longer follows
    ],
    ids=["edit", "delete"],
)
async def test_tampering_is_found(
    chain: list[int], settings: Settings, capsys: pytest.CaptureFixture[str], tamper: str, broken_index: int
) -> None:
    conn = await _superuser(settings)
    try:
        await conn.execute(tamper, chain[2])
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1
    assert f"row {chain[broken_index]}" in out


async def test_inserted_row_is_found(chain: list[int], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """A row slipped into history is found even when its own hash is computed correctly."""
    entry = audit.AuditEntry(datetime.now(UTC), "operator:x", "person.viewed", "person:y", {})
    conn = await _superuser(settings)
    try:
        await conn.execute(
            """INSERT INTO audit_log (id, at, actor, action, subject, details, prev_hash, hash)
               OVERRIDING SYSTEM VALUE VALUES (0, $1, $2, $3, $4, $5, $6, $7)""",
            entry.at,
            entry.actor,
            entry.action,
            entry.subject,
            "{}",
            audit.GENESIS,
            audit.legacy_chain_hash(audit.GENESIS, entry),
        )
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1
    assert f"row {chain[0]}" in out


async def test_the_application_role_cannot_change_the_log(chain: list[int], pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE audit_log SET actor = 'x' WHERE id = $1", chain[0])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_log WHERE id = $1", chain[0])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("TRUNCATE audit_log")


async def test_even_the_owner_is_stopped_by_the_trigger(chain: list[int], settings: Settings) -> None:
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM audit_log WHERE id = $1", chain[0])
    finally:
        await conn.close()


# -- the owner's tampering the plain chain missed: a cut tail, truncation, a rebuild ----------------
async def _anchor(services: Services) -> audit.Anchor:
    anchor = await audit.write_anchor(services.pool, services.storage, services.settings.audit_chain_key)
    assert anchor is not None
    return anchor


async def _rebuild_from(conn: asyncpg.Connection, first_id: int) -> None:
    """Recompute every hash from `first_id` on with plain SHA-256, as the database owner can."""
    rows = await conn.fetch("SELECT id, at, actor, action, subject, details::text, hash FROM audit_log ORDER BY id")
    prev = audit.GENESIS
    for r in rows:
        if r["id"] < first_id:
            prev = r["hash"]
            continue
        entry = audit.AuditEntry(r["at"], r["actor"], r["action"], r["subject"], json.loads(r["details"]))
        digest = hashlib.sha256(prev + audit.canonical(entry)).digest()
        await conn.execute("UPDATE audit_log SET prev_hash = $2, hash = $3 WHERE id = $1", r["id"], prev, digest)
        prev = digest


async def test_intact_chain_agrees_with_its_anchor(
    chain: list[int], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 0, out
    assert f"compared with 1 anchor(s), the highest of row {chain[-1]}" in out
    assert "audit chain intact: 5 row(s)" in out


async def test_rows_deleted_from_the_tail_are_found(
    chain: list[int], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("DELETE FROM audit_log WHERE id >= $1", chain[3])
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"the log ends at row {chain[2]} (3 row(s)), but the anchor of" in out
    assert f"recorded 5 row(s) up to row {chain[4]}" in out


async def test_a_truncated_log_is_found(
    chain: list[int], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("TRUNCATE audit_log")
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert "rows deleted from the tail or the table truncated: the log is empty (0 row(s))" in out
    assert f"up to row {chain[4]}" in out


@pytest.mark.parametrize("anchored", [False, True], ids=["key-alone", "anchored"])
async def test_an_edit_with_every_later_hash_recomputed_is_found(
    chain: list[int],
    services: Services,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    anchored: bool,
) -> None:
    if anchored:
        await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE id = $1""", chain[2])
        await _rebuild_from(conn, chain[2])
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"audit chain broken at row {chain[2]}: its content does not match its keyed hash" in out
    if anchored:
        assert f"row {chain[4]} has a different hash from the one anchored at" in out


async def test_a_rebuild_in_the_unkeyed_form_past_a_moved_boundary_is_found(
    chain: list[int], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The owner who knows the scheme raises keyed_from past the head and rebuilds everything in the
    plain form: the chain checks out, the anchor does not."""
    await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("UPDATE audit_chain SET keyed_from = 1000000")
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE id = $1""", chain[1])
        await _rebuild_from(conn, chain[0])
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert "audit chain broken" not in out  # consistent on its own
    assert "keyed from id 1000000" in out
    assert "the boundary was moved" in out
    assert f"row {chain[4]} has a different hash" in out


async def test_an_anchor_not_signed_with_the_key_is_reported(
    chain: list[int], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    forged = audit.Anchor(3, b"\x01" * 32, 3, 1, datetime.now(UTC))
    services.storage.put_bytes(audit.anchor_name(forged), audit.seal_anchor(bytes(32), forged), "application/json")
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"anchor {audit.anchor_name(forged)}: its signature does not match" in out


async def test_the_boundary_row_is_fixed_even_for_the_owner(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="fixed at migration"):
            await conn.execute("UPDATE audit_chain SET keyed_from = 5")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE audit_chain")
    finally:
        await conn.close()


# -- the anchor job -------------------------------------------------------------------------------
async def _run_anchor_job(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await enqueue_once(Queries(AsyncpgDriver(conn)), audit.ANCHOR_JOB)
    finally:
        await conn.close()
    await asyncio.wait_for(run_worker(settings, drain=True), timeout=120)


async def test_the_scheduled_job_signs_the_head_into_the_object_store(
    chain: list[int], services: Services, settings: Settings
) -> None:
    assert audit.ANCHOR_JOB in SCHEDULES
    key = settings.audit_chain_key
    await _run_anchor_job(settings)
    (name,) = services.storage.keys(audit.ANCHOR_PREFIX)
    anchor = audit.open_anchor(key, services.storage.get_bytes(name))
    head = await services.pool.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
    assert (anchor.last_id, anchor.hash, anchor.count) == (chain[-1], head["hash"], 5)
    assert anchor.keyed_from == await audit.keyed_from(services.pool)
    assert name == audit.anchor_name(anchor)

    await _run_anchor_job(settings)  # nothing written since: no second copy of the same head
    assert services.storage.keys(audit.ANCHOR_PREFIX) == [name]

    async with unit_of_work(services.pool) as uow:
        await audit.record(uow, "system:test", "test.event", "thing:5", {})
    await _run_anchor_job(settings)
    names = services.storage.keys(audit.ANCHOR_PREFIX)
    assert len(names) == 2
    assert names[1] == name  # the newest head lists first
    assert audit.open_anchor(key, services.storage.get_bytes(names[0])).count == 6


# -- rows written before the key ----------------------------------------------------------------
async def test_rows_written_before_the_key_still_verify(embedded: Embedded, settings: Settings) -> None:
    """A log migrated with rows in the plain form: they verify as such, and rows after them are keyed."""
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute('DROP DATABASE IF EXISTS "audit_before_key" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "audit_before_key"')
    url = embedded.postgres.url("postgres", "audit_before_key")
    try:
        conn = await asyncpg.connect(url)
        try:
            await _apply_migrations_before(conn, "0009_audit_chain_key.sql")
            prev = audit.GENESIS
            for i in range(3):  # the way rows were written before 0009
                entry = audit.AuditEntry(datetime.now(UTC), "system:old", "old.event", f"thing:{i}", {"i": i})
                digest = audit.legacy_chain_hash(prev, entry)
                await conn.execute(
                    """INSERT INTO audit_log (at, actor, action, subject, details, prev_hash, hash)
                       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)""",
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.subject,
                    f'{{"i": {i}}}',
                    prev,
                    digest,
                )
                prev = digest
        finally:
            await conn.close()
        await migrate(url, APP_ROLE)
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            assert await audit.keyed_from(pool) == 4
            audit.use_key(settings.audit_chain_key)
            for i in range(2):
                async with unit_of_work(pool) as uow:
                    await audit.record(uow, "system:new", "new.event", f"thing:{i}", {})
            storage = ObjectStorage(settings)
            result = await audit.verify_with_anchors(pool, storage, settings.audit_chain_key)
            assert result.intact, result
            assert (result.rows, result.legacy_rows, result.keyed_from) == (5, 3, 4)
            # The legacy rows are covered by the keyed row after them: rewriting them breaks it.
            owner = await asyncpg.connect(url)
            try:
                await owner.execute("SET session_replication_role = replica")
                await owner.execute("""UPDATE audit_log SET details = '{"i": 7}' WHERE id = 2""")
                await _rebuild_from(owner, 2)
            finally:
                await owner.close()
            result = await audit.verify_with_anchors(pool, storage, settings.audit_chain_key)
            assert result.broken == audit.ChainBreak(
                4, "its content does not match its keyed hash (edited, or rehashed without the chain key)"
            )
        finally:
            await pool.close()
    finally:
        await admin.execute('DROP DATABASE IF EXISTS "audit_before_key" WITH (FORCE)')
        await admin.close()


async def _apply_migrations_before(conn: asyncpg.Connection, first_not_applied: str) -> None:
    """The schema as it stood before `first_not_applied`, recorded as migrate() records it."""
    await conn.execute(
        """CREATE TABLE schema_migrations (
               name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    for path in migration_files():
        if path.name >= first_not_applied:
            break
        sql = path.read_text()
        await conn.execute(sql)
        await conn.execute(
            "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
            path.name,
            hashlib.sha256(sql.encode()).hexdigest(),
        )


# -- checkpoints: the console walks only from the newest one; the full walk still reads every row --------
async def _sign_in_auditor(client: Any, services: Services) -> None:
    await console_sign_in(client, "aud", await staff_member(services, "aud", "Ada Auditor", "auditor"))


async def _audit_page(client: Any) -> str:
    page = await client.get("/console/audit")
    assert page.status_code == 200, page.text
    return html.unescape(page.text)


async def _checkpoints(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT last_id, row_count, full_walk, problems FROM audit_checkpoints WHERE chain = 'log' ORDER BY id"
    )


async def test_the_full_walk_records_a_checkpoint_and_the_page_walks_on_from_it(
    chain: list[int], services: Services, settings: Settings, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 0, out
    assert f"checkpoint recorded at row {chain[-1]}" in out
    assert [tuple(r) for r in await _checkpoints(services.pool)] == [(chain[-1], 5, True, [])]

    await _sign_in_auditor(client, services)  # rows after the checkpoint
    since = await services.pool.fetch("SELECT id FROM audit_log WHERE id > $1 ORDER BY id", chain[-1])
    page = await _audit_page(client)
    count = len(since)
    assert f"本次查看校验了第{since[0]['id']}至{since[-1]['id']}条记录（共{count}条），起点是" in page
    assert f"校验过的第{chain[-1]}条检查点" in page
    onward = await audit_checkpoints.check_onward(services.pool, settings.audit_chain_key)  # the look too
    assert onward.start is not None
    assert onward.start.last_id == chain[-1]
    assert (onward.walked, onward.rows, onward.broken) == (count + 1, 5 + count + 1, None)
    assert "审计链完整" in page
    assert "最近一次完整校验" in page
    assert "完整无误" in page


async def test_the_anchor_job_advances_the_checkpoint(chain: list[int], services: Services, settings: Settings) -> None:
    await _run_anchor_job(settings)  # no full walk yet: a full one
    assert [tuple(r) for r in await _checkpoints(services.pool)] == [(chain[-1], 5, True, [])]
    async with unit_of_work(services.pool) as uow:
        await audit.record(uow, "system:test", "test.event", "thing:5", {})
    await _run_anchor_job(settings)  # the full walk is recent: onward from the checkpoint
    head = await services.pool.fetchval("SELECT max(id) FROM audit_log")
    assert [tuple(r) for r in await _checkpoints(services.pool)][1:] == [(head, 6, False, [])]
    await _run_anchor_job(settings)  # nothing written since: no new checkpoint
    assert len(await _checkpoints(services.pool)) == 2


async def test_a_row_tampered_after_the_checkpoint_is_reported_on_the_page(
    chain: list[int], services: Services, settings: Settings, client: Any
) -> None:
    await _sign_in_auditor(client, services)
    _, checkpoint = await audit_checkpoints.full_walk(services.pool, services.storage, settings.audit_chain_key)
    assert checkpoint is not None
    await _audit_page(client)  # its audit.viewed row is after the checkpoint
    after = await services.pool.fetchval("SELECT min(id) FROM audit_log WHERE id > $1", checkpoint.last_id)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE id = $1""", after)
    finally:
        await conn.close()
    page = await _audit_page(client)
    assert f"审计链在第{after}条记录处断开：its content does not match its keyed hash" in page


async def test_the_checkpointed_row_deleted_is_reported_on_the_page(
    chain: list[int], services: Services, settings: Settings, client: Any
) -> None:
    await _sign_in_auditor(client, services)
    _, checkpoint = await audit_checkpoints.full_walk(services.pool, services.storage, settings.audit_chain_key)
    assert checkpoint is not None
    conn = await _superuser(settings)
    try:
        await conn.execute("DELETE FROM audit_log WHERE id = $1", checkpoint.last_id)
    finally:
        await conn.close()
    page = await _audit_page(client)
    assert f"审计链在第{checkpoint.last_id}条记录处断开：it is missing, verified at" in page


async def test_a_row_tampered_before_the_checkpoint_is_found_by_the_full_walk(
    chain: list[int], services: Services, settings: Settings, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await _sign_in_auditor(client, services)
    await audit_checkpoints.full_walk(services.pool, services.storage, settings.audit_chain_key)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE id = $1""", chain[1])
    finally:
        await conn.close()
    # The page walks on from the checkpoint, after the row: it cannot see it (the price of the checkpoint)...
    assert "审计链完整" in await _audit_page(client)
    # ...the full walk does, says so, and records it for the page.
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"audit chain broken at row {chain[1]}: its content does not match its keyed hash" in out
    assert "checkpoint recorded" not in out
    page = await _audit_page(client)
    assert f"发现日志被篡改：row {chain[1]}: its content does not match its keyed hash" in page
    # The broken walk is no checkpoint to start from: the first one still is.
    onward = await audit_checkpoints.check_onward(services.pool, settings.audit_chain_key)
    assert onward.start is not None
    assert onward.start.full_walk
    assert not onward.start.problems
    assert onward.full_walk is not None
    assert onward.full_walk.problems


async def test_a_forged_checkpoint_is_refused(
    chain: list[int], services: Services, settings: Settings, client: Any
) -> None:
    """The database owner edits a row, then writes a checkpoint past it, signed with a key of their own:
    the page does not start from it, says so, and finds the edit."""
    await _sign_in_auditor(client, services)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE id = $1""", chain[2])
        head = await conn.fetchrow("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        forged = audit_checkpoints.Checkpoint(
            "log", head["id"], head["hash"], 5, await audit.keyed_from(services.pool), True, (), datetime.now(UTC)
        )
        await conn.execute(
            """INSERT INTO audit_checkpoints
                   (chain, last_id, hash, row_count, keyed_from, full_walk, problems, verified_at, mac)
               VALUES ($1, $2, $3, $4, $5, $6, '{}', $7, $8)""",
            forged.chain,
            forged.last_id,
            forged.hash,
            forged.row_count,
            forged.keyed_from,
            forged.full_walk,
            forged.verified_at,
            audit_checkpoints.sign(bytes(32), forged),
        )
    finally:
        await conn.close()
    page = await _audit_page(client)
    assert f"第{forged.last_id}条的检查点" in page
    assert "没有用审计链密钥签名，已拒绝使用" in page
    assert f"审计链在第{chain[2]}条记录处断开" in page
    assert "尚未进行完整校验" in page  # nor is it taken for the last full walk


async def test_a_look_that_walked_far_records_where_it_got_to(
    chain: list[int], services: Services, settings: Settings
) -> None:
    key = settings.audit_chain_key
    await audit_checkpoints.check_onward(services.pool, key, record_after=6)  # 5 rows: too few
    assert await _checkpoints(services.pool) == []
    first = await audit_checkpoints.check_onward(services.pool, key, record_after=5)
    assert (first.start, first.walked) == (None, 5)
    assert [tuple(r) for r in await _checkpoints(services.pool)] == [(chain[-1], 5, False, [])]
    again = await audit_checkpoints.check_onward(services.pool, key, record_after=5)
    assert again.start is not None
    assert (again.start.last_id, again.walked, again.rows) == (chain[-1], 0, 5)
