"""SQL for sign-in codes, accounts, sessions, refresh tokens, operators and terminals."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from infra.db import Db, UnitOfWork
from notifications import repository as devices


async def lock_phone(uow: UnitOfWork, phone: str) -> None:
    """Serialise sign-in code requests and checks for one phone, across every API process."""
    await uow.execute("SELECT pg_advisory_xact_lock(hashtextextended('otp:' || $1, 0))", phone)


async def lock_client(uow: UnitOfWork, limit: str, client: str) -> None:
    """Serialise what one client does under `limit` (its count and what it adds), across every API process."""
    await uow.execute("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))", limit, client)


async def codes_sent_since(uow: UnitOfWork, phone: str, since: datetime) -> list[datetime]:
    rows = await uow.fetch(
        "SELECT created_at FROM otp_codes WHERE phone = $1 AND created_at > $2 ORDER BY created_at", phone, since
    )
    return [r["created_at"] for r in rows]


async def client_codes_since(uow: UnitOfWork, client: str, since: datetime) -> list[datetime]:
    rows = await uow.fetch(
        "SELECT created_at FROM otp_codes WHERE client = $1 AND created_at > $2 ORDER BY created_at", client, since
    )
    return [r["created_at"] for r in rows]


async def take_from_hourly_total(db: Db, total: int) -> datetime | None:
    """Count one more code in this clock hour, unless `total` were sent in it already; the hour counted in."""
    hour: datetime | None = await db.fetchval(
        """UPDATE otp_hourly_total
           SET sent = CASE WHEN hour = date_trunc('hour', now()) THEN sent + 1 ELSE 1 END,
               hour = date_trunc('hour', now())
           WHERE hour < date_trunc('hour', now()) OR sent < $1
           RETURNING hour""",
        total,
    )
    return hour


async def give_back_to_hourly_total(db: Db, hour: datetime) -> None:
    """A code counted in `hour` was not sent after all (in a later hour there is nothing to give back)."""
    await db.execute("UPDATE otp_hourly_total SET sent = sent - 1 WHERE hour = $1 AND sent > 0", hour)


async def insert_code(
    uow: UnitOfWork, phone: str, purpose: str, client: str, code_hash: bytes, expires_at: datetime
) -> None:
    # A new code replaces the ones before it (of its purpose: a sign-in leaves a recovery alone).
    await uow.execute(
        "UPDATE otp_codes SET consumed_at = now() WHERE phone = $1 AND purpose = $2 AND consumed_at IS NULL",
        phone,
        purpose,
    )
    await uow.execute(
        """INSERT INTO otp_codes (phone, purpose, client, code_hash, expires_at) VALUES ($1, $2, $3, $4, $5)""",
        phone,
        purpose,
        client,
        code_hash,
        expires_at,
    )


async def latest_open_code(uow: UnitOfWork, phone: str, purpose: str) -> asyncpg.Record | None:
    return await uow.fetchrow(
        """SELECT id, code_hash, created_at, expires_at, attempts FROM otp_codes
           WHERE phone = $1 AND purpose = $2 AND consumed_at IS NULL ORDER BY id DESC LIMIT 1""",
        phone,
        purpose,
    )


async def count_failed_attempt(uow: UnitOfWork, code_id: int) -> int:
    attempts: int = await uow.fetchval(
        "UPDATE otp_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts", code_id
    )
    return attempts


async def consume_code(uow: UnitOfWork, code_id: int) -> None:
    await uow.execute("UPDATE otp_codes SET consumed_at = now() WHERE id = $1", code_id)


async def upsert_account(uow: UnitOfWork, phone: str) -> uuid.UUID:
    account_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO accounts (phone) VALUES ($1)
           ON CONFLICT (phone) DO UPDATE SET phone = excluded.phone RETURNING id""",
        phone,
    )
    return account_id


async def create_session(
    uow: UnitOfWork,
    kind: str,
    principal_id: uuid.UUID,
    device_id: str | None,
    platform: str | None,
    expires_at: datetime,
) -> uuid.UUID:
    session_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO sessions (principal_kind, principal_id, device_id, platform, expires_at)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        kind,
        principal_id,
        device_id,
        platform,
        expires_at,
    )
    return session_id


async def insert_refresh_token(uow: UnitOfWork, session_id: uuid.UUID, token_hash: bytes, expires_at: datetime) -> None:
    await uow.execute(
        "INSERT INTO refresh_tokens (session_id, token_hash, expires_at) VALUES ($1, $2, $3)",
        session_id,
        token_hash,
        expires_at,
    )


async def refresh_token_for_update(uow: UnitOfWork, token_hash: bytes) -> asyncpg.Record | None:
    return await uow.fetchrow(
        """SELECT r.id, r.session_id, r.expires_at, r.used_at, s.principal_kind, s.principal_id,
                  s.revoked_at, s.expires_at AS session_expires_at
           FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
           WHERE r.token_hash = $1
           FOR UPDATE OF r, s""",
        token_hash,
    )


async def mark_refresh_used(uow: UnitOfWork, token_id: uuid.UUID) -> None:
    await uow.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", token_id)


async def create_console_session(
    uow: UnitOfWork, operator_id: uuid.UUID, secret_hash: bytes, expires_at: datetime
) -> uuid.UUID:
    session_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO sessions (principal_kind, principal_id, platform, expires_at, secret_hash, last_seen_at)
           VALUES ('operator', $1, 'console', $2, $3, now()) RETURNING id""",
        operator_id,
        expires_at,
        secret_hash,
    )
    return session_id


async def end_console_session(uow: UnitOfWork, secret_hash: bytes, reason: str) -> None:
    await uow.execute(
        "UPDATE sessions SET revoked_at = now(), revoke_reason = $2 WHERE secret_hash = $1 AND revoked_at IS NULL",
        secret_hash,
        reason,
    )


async def set_operator_locale(uow: UnitOfWork, operator_id: uuid.UUID, locale: str) -> None:
    await uow.execute("UPDATE operators SET locale = $2 WHERE id = $1", operator_id, locale)


async def revoke_session(uow: UnitOfWork, session_id: uuid.UUID, reason: str) -> None:
    # The person of an account's session: their devices are retired on their shard.
    person_id: uuid.UUID | None = await uow.fetchval(
        """UPDATE sessions s SET revoked_at = now(), revoke_reason = $2 WHERE id = $1 AND revoked_at IS NULL
           RETURNING (SELECT a.person_id FROM accounts a WHERE s.principal_kind = 'account' AND a.id = s.principal_id)""",
        session_id,
        reason,
    )
    if person_id is not None:
        await devices.retire_for_sessions(uow, person_id, [session_id], reason)


async def revoke_person_sessions(uow: UnitOfWork, person_id: uuid.UUID, keep: uuid.UUID | None, reason: str) -> int:
    """End every sign-in of the person's account but `keep`; how many ended. Their refresh tokens end with
    them (a refresh needs its session), so do the QR codes they minted, and the phones they registered
    for push stop getting the person's notices."""
    rows = await uow.fetch(
        """UPDATE sessions s SET revoked_at = now(), revoke_reason = $3
           FROM accounts a
           WHERE a.person_id = $1 AND s.principal_kind = 'account' AND s.principal_id = a.id
             AND s.id IS DISTINCT FROM $2 AND s.revoked_at IS NULL
           RETURNING s.id""",
        person_id,
        keep,
        reason,
    )
    await devices.retire_for_sessions(uow, person_id, [r["id"] for r in rows], reason)
    return len(rows)


async def operator_by_username(uow: UnitOfWork, username: str) -> asyncpg.Record | None:
    return await uow.fetchrow(
        """SELECT id, username, display_name, role, locale, password_hash, totp_secret_enc, totp_last_step,
                  disabled_at
           FROM operators WHERE username = $1 FOR UPDATE""",
        username,
    )


async def operator_id(uow: UnitOfWork, username: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await uow.fetchval("SELECT id FROM operators WHERE username = $1", username)
    return found


async def lock_sign_in_name(uow: UnitOfWork, name_hash: bytes) -> datetime | None:
    """Serialise the sign-ins under one username, known or not; until when it is locked, if it was."""
    await uow.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('operator-name:' || encode($1, 'hex'), 0))", name_hash
    )
    locked_until: datetime | None = await uow.fetchval(
        "SELECT locked_until FROM operator_sign_in_names WHERE name_hash = $1", name_hash
    )
    return locked_until


async def operator_failures_since(uow: UnitOfWork, client: str, since: datetime) -> list[datetime]:
    rows = await uow.fetch(
        "SELECT failed_at FROM operator_sign_in_failures WHERE client = $1 AND failed_at > $2 ORDER BY failed_at",
        client,
        since,
    )
    return [r["failed_at"] for r in rows]


async def record_operator_failure(uow: UnitOfWork, name_hash: bytes, client: str, lock_after: int, lock_s: int) -> None:
    """Count a failure against the username typed (locked for `lock_s` once `lock_after` are in a row) and
    against the client. What is a day old goes meanwhile: failures are rare, so this costs little."""
    await uow.execute(
        """INSERT INTO operator_sign_in_names AS n (name_hash, failed_attempts, locked_until, last_failed_at)
           VALUES ($1, 1, CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END, now())
           ON CONFLICT (name_hash) DO UPDATE
           SET failed_attempts = n.failed_attempts + 1,
               locked_until = CASE WHEN n.failed_attempts + 1 >= $2
                                   THEN now() + make_interval(secs => $3) ELSE n.locked_until END,
               last_failed_at = now()""",
        name_hash,
        lock_after,
        lock_s,
    )
    await uow.execute("INSERT INTO operator_sign_in_failures (client) VALUES ($1)", client)
    # Rows another sign-in holds are left for a later failure: waiting on them could wait in a circle.
    await uow.execute(
        """DELETE FROM operator_sign_in_names WHERE name_hash IN (
               SELECT name_hash FROM operator_sign_in_names
               WHERE last_failed_at < now() - interval '1 day' AND (locked_until IS NULL OR locked_until < now())
               FOR UPDATE SKIP LOCKED)"""
    )
    await uow.execute(
        """DELETE FROM operator_sign_in_failures WHERE id IN (
               SELECT id FROM operator_sign_in_failures WHERE failed_at < now() - interval '1 day'
               FOR UPDATE SKIP LOCKED)"""
    )


async def operator_signed_in(uow: UnitOfWork, operator_id: uuid.UUID, name_hash: bytes, totp_step: int) -> None:
    """A success: the failures in a row under the name are over, and the TOTP step is spent."""
    await uow.execute("DELETE FROM operator_sign_in_names WHERE name_hash = $1", name_hash)
    await uow.execute("UPDATE operators SET totp_last_step = $2 WHERE id = $1", operator_id, totp_step)


async def insert_operator(
    uow: UnitOfWork, username: str, display_name: str, role: str, password_hash: str, totp_secret_enc: bytes
) -> uuid.UUID:
    operator_id: uuid.UUID = await uow.fetchval(
        """INSERT INTO operators (username, display_name, role, password_hash, totp_secret_enc)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        username,
        display_name,
        role,
        password_hash,
        totp_secret_enc,
    )
    return operator_id


async def insert_terminal(uow: UnitOfWork, terminal_id: uuid.UUID, merchant: str, key_hash: bytes) -> None:
    await uow.execute(
        "INSERT INTO terminals (id, merchant, key_hash) VALUES ($1, $2, $3)", terminal_id, merchant, key_hash
    )


# Principal resolution runs on every authenticated request: one indexed lookup each.
ACCOUNT_SESSION_SQL = """
    SELECT a.id AS account_id, a.person_id, a.phone, s.device_id
    FROM sessions s JOIN accounts a ON a.id = s.principal_id
    WHERE s.id = $1 AND s.principal_kind = 'account' AND s.revoked_at IS NULL AND s.expires_at > now()"""

OPERATOR_SESSION_SQL = """
    SELECT o.id AS operator_id, o.role, o.username
    FROM sessions s JOIN operators o ON o.id = s.principal_id
    WHERE s.id = $1 AND s.principal_kind = 'operator' AND s.revoked_at IS NULL AND s.expires_at > now()
      AND o.disabled_at IS NULL"""

TERMINAL_SQL = "SELECT merchant, key_hash FROM terminals WHERE id = $1 AND revoked_at IS NULL"

# A console request: the cookie's session, if it was used within the idle limit; using it counts as
# activity. A session found idle is ended here, so it cannot come back to life.
CONSOLE_SESSION_SQL = """
    WITH found AS (
        SELECT s.id, s.last_seen_at > now() - make_interval(secs => $2) AS live
        FROM sessions s JOIN operators o ON o.id = s.principal_id
        WHERE s.secret_hash = $1 AND s.principal_kind = 'operator' AND s.revoked_at IS NULL
          AND s.expires_at > now() AND o.disabled_at IS NULL
    )
    UPDATE sessions s
    SET last_seen_at = CASE WHEN f.live THEN (SELECT now()) ELSE s.last_seen_at END,
        revoked_at = CASE WHEN f.live THEN NULL ELSE (SELECT now()) END,
        revoke_reason = CASE WHEN f.live THEN NULL ELSE 'idle' END
    FROM found f, operators o
    WHERE s.id = f.id AND o.id = s.principal_id
    RETURNING s.id AS session_id, f.live, o.id, o.role, o.username, o.display_name, o.locale"""


async def administrator_id(db: Db, username: str) -> uuid.UUID | None:
    """An enabled administrator's id by username (the CLI's `--as`, for what needs a named administrator)."""
    found: uuid.UUID | None = await db.fetchval(
        "SELECT id FROM operators WHERE username = $1 AND role = 'admin' AND disabled_at IS NULL", username
    )
    return found
