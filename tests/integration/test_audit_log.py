"""The audit chain: tampering directly in SQL is found by `socialcard audit verify`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from infra import audit
from infra.config import Settings
from infra.db import unit_of_work
from tests.factories import run_cli


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
            audit.chain_hash(audit.GENESIS, entry),
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
