"""The audit chains: tampering directly in SQL, even by the database owner who recomputes hashes, is
found by `socialcard audit verify` with the chain key and the signed anchors (every chain's head) in the
object store, and named by chain and row; the console's audit page walks each chain only from its newest
signed checkpoint on, and shows what the full walk found."""

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

SUBJECT = "person:0193e0f0-0000-7000-8000-000000000023"  # one person: one chain
CHAIN = audit.chain_of(SUBJECT)


def _subject_in(chain: int, prefix: str = "thing") -> str:
    return next(f"{prefix}:{i}" for i in range(10_000) if audit.chain_of(f"{prefix}:{i}") == chain)


@pytest.fixture
async def chain(pool: asyncpg.Pool) -> list[str]:
    """Five rows about one person, in its chain; their names (chain/seq)."""
    assert CHAIN != audit.LEGACY_CHAIN  # chain 0 holds the rows from before 0027: these are keyed throughout
    for i in range(5):
        async with unit_of_work(pool) as uow:
            await audit.record(uow, "system:test", "test.event", SUBJECT, {"n": i, "text": "值"})
    found = await pool.fetch("SELECT chain, seq FROM audit_log WHERE chain = $1 ORDER BY seq", CHAIN)
    return [audit.row_name(r["chain"], r["seq"]) for r in found]


def _seq(row: str) -> int:
    return int(row.split("/")[1])


async def _superuser(settings: Settings) -> asyncpg.Connection:
    conn = await asyncpg.connect(settings.migration_database_url)
    await conn.execute("SET session_replication_role = replica")  # bypasses audit_chain's trigger
    return conn


def _verify_cli(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = run_cli(settings, "audit", "verify")
    return status, capsys.readouterr().out


async def test_intact_chain_verifies(chain: list[str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 0
    assert f"5 row(s) verified in 1 of {audit.CHAINS} chain(s)" in out


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


@pytest.mark.parametrize(
    ("tamper", "broken_index"),
    [
        ("UPDATE audit_log SET details = '{\"n\": 99}' WHERE chain = $1 AND seq = $2", 2),
        ("DELETE FROM audit_log WHERE chain = $1 AND seq = $2", 3),  # the row after it no longer follows
    ],
    ids=["edit", "delete"],
)
async def test_tampering_is_found(
    chain: list[str], settings: Settings, capsys: pytest.CaptureFixture[str], tamper: str, broken_index: int
) -> None:
    conn = await _superuser(settings)
    try:
        await conn.execute(tamper, CHAIN, _seq(chain[2]))
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1
    assert f"row {chain[broken_index]}" in out


async def test_inserted_row_is_found(chain: list[str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """A row slipped into history is found even when its own hash is computed correctly (in the plain
    form: the owner has no key), and named; so is a row put in a chain that is not one of them."""
    entry = audit.AuditEntry(datetime.now(UTC), "operator:x", "person.viewed", SUBJECT, {})
    conn = await _superuser(settings)
    try:
        for chain_no, seq in ((CHAIN, 0), (99, 1)):
            await conn.execute(
                """INSERT INTO audit_log (chain, seq, at, actor, action, subject, details, prev_hash, hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
                chain_no,
                seq,
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
    assert f"audit chain broken at row {CHAIN}/0: its content does not match its keyed hash" in out
    assert f"1 row(s) in chain 99, which is not one of the {audit.CHAINS} (inserted), from row 99/1" in out


async def test_every_broken_chain_is_named(
    pool: asyncpg.Pool, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each chain is walked on its own: a break in one does not hide a break in another."""
    first, second = _subject_in(3), _subject_in(17)
    for _ in range(2):
        async with unit_of_work(pool) as uow:
            await audit.record_many(uow, "system:test", "test.event", [(first, {}), (second, {})])
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"x": 1}' WHERE chain IN (3, 17) AND seq = 2""")
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1
    assert "audit chain broken at row 3/2" in out
    assert "audit chain broken at row 17/2" in out


async def test_one_persons_history_is_one_chain_verified_alone(
    chain: list[str], pool: asyncpg.Pool, settings: Settings
) -> None:
    async with unit_of_work(pool) as uow:  # other subjects go elsewhere
        await audit.record_many(uow, "system:test", "test.other", [(_subject_in(c), {}) for c in (1, 2, 5)])
    walk = await audit.walk_chain(pool, settings.audit_chain_key, CHAIN, await audit.keyed_from(pool))
    assert (walk.rows, walk.broken, walk.last and walk.last[0]) == (5, None, 5)
    subjects = await pool.fetch("SELECT DISTINCT subject FROM audit_log WHERE chain = $1", CHAIN)
    assert [r["subject"] for r in subjects] == [SUBJECT]
    head = await pool.fetchrow("SELECT seq, row_count FROM audit_heads WHERE chain = $1", CHAIN)
    assert tuple(head) == (5, 5)


async def test_writers_of_many_chains_at_once_neither_deadlock_nor_break_a_chain(pool: asyncpg.Pool) -> None:
    """Batches over the same chains in opposite orders, at once: each locks its chains in ascending
    order, so none waits on another in a cycle; every chain stays whole and gapless."""
    subjects = [_subject_in(c) for c in range(0, audit.CHAINS, 3)]

    async def writer(order: list[str]) -> None:
        for n in range(15):
            async with unit_of_work(pool) as uow:
                await audit.record_many(uow, "system:test", "test.race", [(s, {"n": n}) for s in order])

    await asyncio.wait_for(asyncio.gather(writer(subjects), writer(subjects[::-1]), writer(subjects[1:])), 60)
    count, broken = await audit.verify(pool)
    assert (count, broken) == (15 * (2 * len(subjects) + len(subjects) - 1), None)
    gaps = await pool.fetchval(
        "SELECT count(*) FROM (SELECT chain, max(seq) - count(*) AS gap FROM audit_log GROUP BY chain) g WHERE gap <> 0"
    )
    assert gaps == 0


async def test_the_application_role_cannot_change_the_log(chain: list[str], pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE audit_log SET actor = 'x' WHERE chain = $1 AND seq = 1", CHAIN)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_log WHERE chain = $1 AND seq = 1", CHAIN)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("TRUNCATE audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_heads WHERE chain = $1", CHAIN)


async def test_the_log_is_placed_by_chain_with_its_heads(pool: asyncpg.Pool) -> None:
    """No trigger (Citus runs none on a distributed table), the key (chain, seq), a head per chain."""
    triggers = await pool.fetchval("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass")
    assert triggers == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_heads") == audit.CHAINS
    assert await audit.recorded_chains(pool) == audit.CHAINS


# -- the owner's tampering the plain chain missed: a cut tail, truncation, a rebuild ----------------
async def _anchor(services: Services) -> audit.Anchor:
    anchor = await audit.write_anchor(services.pool, services.storage, services.settings.audit_chain_key)
    assert anchor is not None
    return anchor


async def _rebuild_from(conn: asyncpg.Connection, chain_no: int, first_seq: int) -> None:
    """Recompute every hash of a chain from `first_seq` on with plain SHA-256, as the database owner can."""
    rows = await conn.fetch(
        "SELECT seq, at, actor, action, subject, details::text, hash FROM audit_log WHERE chain = $1 ORDER BY seq",
        chain_no,
    )
    prev = audit.GENESIS
    for r in rows:
        if r["seq"] < first_seq:
            prev = r["hash"]
            continue
        entry = audit.AuditEntry(r["at"], r["actor"], r["action"], r["subject"], json.loads(r["details"]))
        digest = hashlib.sha256(prev + audit.canonical(entry)).digest()
        await conn.execute(
            "UPDATE audit_log SET prev_hash = $3, hash = $4 WHERE chain = $1 AND seq = $2",
            chain_no,
            r["seq"],
            prev,
            digest,
        )
        prev = digest


async def test_intact_chain_agrees_with_its_anchor(
    chain: list[str], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = await _anchor(services)
    assert anchor.heads == (audit.Head(CHAIN, 5, anchor.heads[0].hash, 5),)
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 0, out
    assert "compared with 1 anchor(s), the newest of " in out
    assert ": 5 row(s) in 1 chain(s)" in out
    assert "audit chain intact: 5 row(s)" in out


async def test_rows_deleted_from_the_tail_are_found(
    chain: list[str], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("DELETE FROM audit_log WHERE chain = $1 AND seq >= 4", CHAIN)
        await conn.execute("UPDATE audit_heads SET seq = 3 WHERE chain = $1", CHAIN)  # the heads too: no help
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"chain {CHAIN} ends at row {chain[2]} (3 row(s)), but the anchor of" in out
    assert f"recorded 5 row(s) up to row {chain[4]}" in out


async def test_a_truncated_log_is_found(
    chain: list[str], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("TRUNCATE audit_log")
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"rows deleted from the tail or the table truncated: chain {CHAIN} is empty (0 row(s))" in out
    assert f"up to row {chain[4]}" in out


@pytest.mark.parametrize("anchored", [False, True], ids=["key-alone", "anchored"])
async def test_an_edit_with_every_later_hash_recomputed_is_found(
    chain: list[str],
    services: Services,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    anchored: bool,
) -> None:
    if anchored:
        await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE chain = $1 AND seq = 3""", CHAIN)
        await _rebuild_from(conn, CHAIN, 3)
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"audit chain broken at row {chain[2]}: its content does not match its keyed hash" in out
    if anchored:
        assert f"row {chain[4]} has a different hash from the one anchored at" in out


async def test_a_rebuild_in_the_unkeyed_form_past_a_moved_boundary_is_found(
    pool: asyncpg.Pool, services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The owner who knows the scheme raises keyed_from past the head and rebuilds chain 0 (the only one
    with an unkeyed part) in the plain form: the chain checks out, the anchor does not."""
    subject = _subject_in(audit.LEGACY_CHAIN)
    for i in range(3):
        async with unit_of_work(pool) as uow:
            await audit.record(uow, "system:test", "test.event", subject, {"n": i})
    await _anchor(services)
    conn = await _superuser(settings)
    try:
        await conn.execute("UPDATE audit_chain SET keyed_from = 1000000")
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE chain = 0 AND seq = 2""")
        await _rebuild_from(conn, 0, 1)
    finally:
        await conn.close()
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert "audit chain broken" not in out  # consistent on its own
    assert "keyed from seq 1000000 of chain 0" in out
    assert "the boundary was moved" in out
    assert "row 0/3 has a different hash" in out


async def test_an_anchor_not_signed_with_the_key_is_reported(
    chain: list[str], services: Services, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _anchor(services)
    forged = audit.Anchor((audit.Head(CHAIN, 3, b"\x01" * 32, 3),), 1, audit.CHAINS, datetime.now(UTC))
    services.storage.put_bytes(audit.anchor_name(forged), audit.seal_anchor(bytes(32), forged), "application/json")
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"anchor {audit.anchor_name(forged)}: its signature does not match" in out


async def test_the_boundary_row_is_fixed_even_for_the_owner(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="fixed at migration"):
            await conn.execute("UPDATE audit_chain SET keyed_from = 5")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="fixed at migration"):
            await conn.execute("UPDATE audit_chain SET chains = 64")
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
    chain: list[str], services: Services, settings: Settings
) -> None:
    assert audit.ANCHOR_JOB in SCHEDULES
    key = settings.audit_chain_key
    await _run_anchor_job(settings)
    (name,) = services.storage.keys(audit.ANCHOR_PREFIX)
    anchor = audit.open_anchor(key, services.storage.get_bytes(name))
    head = await services.pool.fetchval("SELECT hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1", CHAIN)
    assert anchor.heads == (audit.Head(CHAIN, 5, head, 5),)
    assert anchor.chains == audit.CHAINS
    assert anchor.keyed_from == await audit.keyed_from(services.pool)
    assert name == audit.anchor_name(anchor)

    await _run_anchor_job(settings)  # nothing written since: no second copy of the same head
    assert services.storage.keys(audit.ANCHOR_PREFIX) == [name]

    async with unit_of_work(services.pool) as uow:
        await audit.record(uow, "system:test", "test.event", _subject_in(7), {})
    await _run_anchor_job(settings)
    names = services.storage.keys(audit.ANCHOR_PREFIX)
    assert len(names) == 2
    assert names[1] == name  # the newest head lists first
    newest = audit.open_anchor(key, services.storage.get_bytes(names[0]))
    assert (newest.count, [h.chain for h in newest.heads]) == (6, sorted({CHAIN, 7}))


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
            assert await pool.fetchval("SELECT array_agg(seq ORDER BY seq) FROM audit_log WHERE chain = 0") == [1, 2, 3]
            for _ in range(2):  # chain 0 goes on from them
                async with unit_of_work(pool) as uow:
                    await audit.record(uow, "system:new", "new.event", _subject_in(audit.LEGACY_CHAIN), {})
            storage = ObjectStorage(settings)
            result = await audit.verify_with_anchors(pool, storage, settings.audit_chain_key)
            assert result.intact, result
            assert (result.rows, result.legacy_rows, result.keyed_from) == (5, 3, 4)
            # The legacy rows are covered by the keyed row after them: rewriting them breaks it.
            owner = await asyncpg.connect(url)
            try:
                await owner.execute("SET session_replication_role = replica")
                await owner.execute("""UPDATE audit_log SET details = '{"i": 7}' WHERE chain = 0 AND seq = 2""")
                await _rebuild_from(owner, 0, 2)
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
        "SELECT chain, last_id, row_count, full_walk, problems FROM audit_checkpoints WHERE chain = $1 ORDER BY id",
        str(CHAIN),
    )


async def test_the_full_walk_records_a_checkpoint_and_the_page_walks_on_from_it(
    chain: list[str], services: Services, settings: Settings, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 0, out
    assert "checkpoints recorded for 1 chain(s)" in out
    assert [tuple(r) for r in await _checkpoints(services.pool)] == [(str(CHAIN), 5, 5, True, [])]

    await _sign_in_auditor(client, services)  # rows after the checkpoint, in other chains
    # (The sign-in's rows go to chains of their subjects: now and then the fixture's too.)
    since = await services.pool.fetch("SELECT chain FROM audit_log WHERE NOT (chain = $1 AND seq <= 5)", CHAIN)
    page = await _audit_page(client)
    count = len(since)
    chains = len({r["chain"] for r in since})
    assert "本次查看从各链最新的检查点（1条链有检查点，最早于" in page
    assert f"往后校验了{chains}条链上的{count}条记录" in page
    onward = await audit_checkpoints.check_onward(services.pool, settings.audit_chain_key)  # the look too
    start = onward.chain(CHAIN).start
    assert start is not None
    assert start.last_id == 5
    assert (onward.walked, onward.rows, onward.broken) == (count + 1, 5 + count + 1, None)
    assert "审计链完整" in page
    assert "最近一次完整校验" in page
    assert "完整无误" in page


async def test_the_anchor_job_advances_the_checkpoint(chain: list[str], services: Services, settings: Settings) -> None:
    await _run_anchor_job(settings)  # no full walk yet: a full one
    assert [tuple(r) for r in await _checkpoints(services.pool)] == [(str(CHAIN), 5, 5, True, [])]
    async with unit_of_work(services.pool) as uow:
        await audit.record(uow, "system:test", "test.event", SUBJECT, {})
    await _run_anchor_job(settings)  # the full walk is recent: onward from the checkpoint
    assert [tuple(r) for r in await _checkpoints(services.pool)][1:] == [(str(CHAIN), 6, 6, False, [])]
    await _run_anchor_job(settings)  # nothing written since: no new checkpoint
    assert len(await _checkpoints(services.pool)) == 2


async def test_a_row_tampered_after_the_checkpoint_is_reported_on_the_page(
    chain: list[str], services: Services, settings: Settings, client: Any
) -> None:
    await _sign_in_auditor(client, services)
    _, checkpoints = await audit_checkpoints.full_walk(services.pool, services.storage, settings.audit_chain_key)
    (mine,) = (c for c in checkpoints if c.chain == str(CHAIN))  # at 5, or after a sign-in row of this chain
    async with unit_of_work(services.pool) as uow:
        await audit.record(uow, "system:test", "test.event", SUBJECT, {})
    after = mine.last_id + 1
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE chain = $1 AND seq = $2""", CHAIN, after)
    finally:
        await conn.close()
    page = await _audit_page(client)
    assert f"审计链在第{CHAIN}/{after}条记录处断开：its content does not match its keyed hash" in page


async def test_the_checkpointed_row_deleted_is_reported_on_the_page(
    chain: list[str], services: Services, settings: Settings, client: Any
) -> None:
    await _sign_in_auditor(client, services)
    _, checkpoints = await audit_checkpoints.full_walk(services.pool, services.storage, settings.audit_chain_key)
    (mine,) = (c for c in checkpoints if c.chain == str(CHAIN))
    conn = await _superuser(settings)
    try:
        await conn.execute("DELETE FROM audit_log WHERE chain = $1 AND seq = $2", CHAIN, mine.last_id)
    finally:
        await conn.close()
    page = await _audit_page(client)
    assert f"审计链在第{CHAIN}/{mine.last_id}条记录处断开：it is missing, verified at" in page


async def test_a_row_tampered_before_the_checkpoint_is_found_by_the_full_walk(
    chain: list[str], services: Services, settings: Settings, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    await _sign_in_auditor(client, services)
    await audit_checkpoints.full_walk(services.pool, services.storage, settings.audit_chain_key)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE chain = $1 AND seq = 2""", CHAIN)
    finally:
        await conn.close()
    # The page walks on from the checkpoint, after the row: it cannot see it (the price of the checkpoint)...
    assert "审计链完整" in await _audit_page(client)
    # ...the full walk does, says so, and records it for the page.
    status, out = await _in_thread(_verify_cli, settings, capsys)
    assert status == 1, out
    assert f"audit chain broken at row {chain[1]}: its content does not match its keyed hash" in out
    assert "checkpoints recorded" not in out
    page = await _audit_page(client)
    assert f"发现日志被篡改：row {chain[1]}: its content does not match its keyed hash" in page
    # The broken walk is no checkpoint to start from: the first one still is.
    onward = await audit_checkpoints.check_onward(services.pool, settings.audit_chain_key)
    start = onward.chain(CHAIN).start
    assert start is not None
    assert start.full_walk
    assert not start.problems
    assert onward.full_walk is not None
    assert onward.full_walk.problems


async def test_a_forged_checkpoint_is_refused(
    chain: list[str], services: Services, settings: Settings, client: Any
) -> None:
    """The database owner edits a row, then writes a checkpoint past it, signed with a key of their own:
    the page does not start from it, says so, and finds the edit."""
    await _sign_in_auditor(client, services)
    conn = await _superuser(settings)
    try:
        await conn.execute("""UPDATE audit_log SET details = '{"n": 99}' WHERE chain = $1 AND seq = 3""", CHAIN)
        head = await conn.fetchrow("SELECT seq, hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1", CHAIN)
        forged = audit_checkpoints.Checkpoint(
            str(CHAIN), head["seq"], head["hash"], 5, await audit.keyed_from(services.pool), True, (), datetime.now(UTC)
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
    assert f"第{CHAIN}/{forged.last_id}条的检查点" in page
    assert "没有用审计链密钥签名，已拒绝使用" in page
    assert f"审计链在第{chain[2]}条记录处断开" in page
    assert "尚未进行完整校验" in page  # nor is it taken for the last full walk


async def test_a_checkpoint_of_one_chain_does_not_pass_for_another(
    chain: list[str], services: Services, settings: Settings
) -> None:
    """A genuine checkpoint copied under another chain's name: its signature covers the name."""
    key = settings.audit_chain_key
    _, checkpoints = await audit_checkpoints.full_walk(services.pool, services.storage, key)
    (mine,) = checkpoints
    other_chain = (CHAIN + 1) % audit.CHAINS or 1
    other = _subject_in(other_chain)
    async with unit_of_work(services.pool) as uow:
        await audit.record(uow, "system:test", "test.event", other, {})
    await services.pool.execute(
        """INSERT INTO audit_checkpoints (chain, last_id, hash, row_count, keyed_from, full_walk, problems,
                                          verified_at, mac)
           SELECT $2, last_id, hash, row_count, keyed_from, full_walk, problems, verified_at, mac
           FROM audit_checkpoints WHERE chain = $1""",
        mine.chain,
        str(other_chain),
    )
    onward = await audit_checkpoints.check_onward(services.pool, key)
    # Refused once, though read both as a start and as a full walk.
    assert [(r.checkpoint.chain, r.reason) for r in onward.refused] == [(str(other_chain), audit_checkpoints.FORGED)]
    assert onward.chain(other_chain).start is None
    assert onward.chain(other_chain).walked == 1
    assert onward.broken is None


async def test_a_checkpoint_from_before_the_chains_is_chain_0s(pool: asyncpg.Pool, settings: Settings) -> None:
    """Checkpoints written before 0027 name the one chain there was, 'log': chain 0 starts from them."""
    key = settings.audit_chain_key
    subject = _subject_in(audit.LEGACY_CHAIN)
    for _ in range(3):
        async with unit_of_work(pool) as uow:
            await audit.record(uow, "system:test", "test.event", subject, {})
    head = await pool.fetchrow("SELECT seq, hash FROM audit_log WHERE chain = 0 AND seq = 2")
    old = audit_checkpoints.Checkpoint(
        "log", 2, head["hash"], 2, await audit.keyed_from(pool), False, (), datetime.now(UTC)
    )
    await audit_checkpoints.record(pool, key, old)
    onward = await audit_checkpoints.check_onward(pool, key)
    assert onward.chain(0).start == old
    assert (onward.chain(0).walked, onward.chain(0).rows, onward.broken) == (1, 3, None)


async def test_a_look_that_walked_far_records_where_it_got_to(
    chain: list[str], services: Services, settings: Settings
) -> None:
    key = settings.audit_chain_key
    await audit_checkpoints.check_onward(services.pool, key, record_after=6)  # 5 rows: too few
    assert await _checkpoints(services.pool) == []
    first = await audit_checkpoints.check_onward(services.pool, key, record_after=5)
    assert (first.chain(CHAIN).start, first.walked) == (None, 5)
    assert [tuple(r) for r in await _checkpoints(services.pool)] == [(str(CHAIN), 5, 5, False, [])]
    again = await audit_checkpoints.check_onward(services.pool, key, record_after=5)
    start = again.chain(CHAIN).start
    assert start is not None
    assert (start.last_id, again.walked, again.rows) == (5, 0, 5)
