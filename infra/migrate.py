"""Plain SQL migrations applied in order under an advisory lock and recorded in schema_migrations.

Applying twice is a no-op. Migrations run as the owner role; the application role gets only what
it needs (in particular it cannot UPDATE or DELETE the audit log).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import asyncpg

from infra import placement

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x50C1A1CA  # one advisory lock for all migrators of this schema


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def statements(sql: str) -> list[str]:
    """A migration's statements, one by one. Citus passes a DDL command's text on to the shards of
    a table it manages, and refuses a text holding several commands; so a migration that runs on a
    cluster whose tables are placed already sends each statement on its own (all in one transaction).

    Splits on semicolons outside quotes, quoted names, comments and dollar-quoted bodies."""
    found: list[str] = []
    start = i = 0
    while i < len(sql):
        if sql.startswith("--", i):
            i = _after(sql, "\n", i + 2)
        elif sql.startswith("/*", i):
            i = _after(sql, "*/", i + 2)
        elif sql[i] in "'\"":
            i = _after(sql, sql[i], i + 1)  # a doubled quote inside is two quoted runs back to back
        elif sql[i] == "$" and (tag := re.match(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$", sql[i:])):
            i = _after(sql, tag.group(), i + len(tag.group()))
        elif sql[i] == ";":
            found.append(sql[start : i + 1])
            start = i = i + 1
        else:
            i += 1
    found.append(sql[start:])
    return [s.strip() for s in found if _code(s)]


def _after(sql: str, end: str, i: int) -> int:
    at = sql.find(end, i)
    return len(sql) if at < 0 else at + len(end)


def _code(statement: str) -> bool:
    """Whether anything but comments and blanks is left."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)
    return bool(text.strip(" \t\r\n;"))


async def migrate(url: str, app_role: str) -> list[str]:
    """Apply the pending migrations; return the names applied."""
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
        for path in migration_files():
            sql = path.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != checksum:
                    raise RuntimeError(f"migration {path.name} was changed after it was applied")
                continue
            async with conn.transaction():
                for statement in statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", path.name, checksum
                )
            applied.append(path.name)
            log.info("migration applied", extra={"migration": path.name})
        await _install_queue(conn)
        if await placement.has_citus(conn):
            placed = await placement.apply(conn)
            log.info("tables placed on the cluster", extra={"placed": placed})
        await _grant(conn, app_role)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        await conn.close()
    return applied


async def _install_queue(conn: asyncpg.Connection) -> None:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    queries = Queries(AsyncpgDriver(conn))
    if await queries.has_table(queries.qbe.settings.queue_table):
        await queries.upgrade()
    else:
        await queries.install()


async def _grant(conn: asyncpg.Connection, app_role: str) -> None:
    if app_role == await conn.fetchval("SELECT current_user"):
        return  # single-role deployment: the owner is the app; the keyed chains and anchors find its edits
    role = '"' + app_role.replace('"', '""') + '"'
    await conn.execute(
        f"""
        GRANT USAGE ON SCHEMA public TO {role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
        GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM {role};
        """
    )
    # Append-only: the audit log, and the ledger's entries and settlements (a correction is a new
    # entry); the audit chains' heads are moved on, never added or removed. Each as far as the
    # migrations applied have made it.
    for table, refused in (
        ("audit_log", "UPDATE, DELETE, TRUNCATE"),
        ("audit_heads", "INSERT, DELETE, TRUNCATE"),
        ("ledger_transfers", "UPDATE, DELETE, TRUNCATE"),
        ("ledger_settlements", "UPDATE, DELETE, TRUNCATE"),
    ):
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            await conn.execute(f"REVOKE {refused} ON {table} FROM {role}")
