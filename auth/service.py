"""Sign-in use cases: SMS codes, token pairs with rotating refresh tokens, operators, terminals."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from auth import codes, rules, tokens
from auth import repository as repo
from auth.client import current_client
from core.errors import BadRequest, TooManyRequests, Unauthorized
from core.principal import ADMIN, AUDITOR, CARDHOLDER, OPERATOR, TERMINAL, Principal
from infra import audit
from infra.config import Settings
from infra.crypto import FieldCipher, lookup_hash, mask_phone
from infra.db import CommitThenRaise, UnitOfWork, unit_of_work
from notifications.sms import SmsProvider

PHONE = re.compile(r"1[3-9][0-9]{9}")
_OPERATOR_SESSION = timedelta(hours=8)
OPERATOR_SESSION_S = int(_OPERATOR_SESSION.total_seconds())  # staff sign-ins, API or console cookie
_OPERATOR_LOCK_AFTER = 5
_OPERATOR_LOCK_S = 15 * 60
_OPERATOR_FAILURE_WINDOW = timedelta(hours=1)
_hasher = PasswordHasher()
log = logging.getLogger(__name__)
# Checked against when no operator has the username typed, so that the same work is done either way.
_DUMMY_TOTP_SECRET = pyotp.random_base32()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    display_name: str
    locale: str
    csrf_token: str  # every console form carries it


class AuthService:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, sms: SmsProvider, cipher: FieldCipher) -> None:
        self._pool = pool
        self._settings = settings
        self._sms = sms
        self._cipher = cipher

    # -- cardholders -----------------------------------------------------------------------------
    async def send_code(self, phone: str, locale: str) -> int:
        """Send a sign-in code; return its lifetime in seconds."""
        if not PHONE.fullmatch(phone):
            raise BadRequest("invalid_phone")
        return await codes.issue(self._pool, self._settings, self._sms, phone, codes.SIGN_IN, locale)

    async def verify_code(self, phone: str, code: str, device_id: str, platform: str) -> TokenPair:
        if not PHONE.fullmatch(phone):
            raise BadRequest("invalid_phone")
        s = self._settings
        async with unit_of_work(self._pool) as uow:
            await codes.redeem(uow, s, phone, codes.SIGN_IN, code)
            account_id = await repo.upsert_account(uow, phone)
            pair = await self._open_session(uow, "account", account_id, device_id, platform, s.refresh_token_ttl_s)
            await audit.record(
                uow,
                f"account:{account_id}",
                "auth.sign_in",
                f"account:{account_id}",
                {"phone": mask_phone(phone), "platform": platform},
            )
        return pair

    async def _open_session(
        self,
        uow: UnitOfWork,
        kind: str,
        principal_id: uuid.UUID,
        device_id: str | None,
        platform: str | None,
        ttl_s: int,
    ) -> TokenPair:
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
        session_id = await repo.create_session(uow, kind, principal_id, device_id, platform, expires_at)
        return await self._issue_pair(uow, session_id, kind, expires_at)

    async def _issue_pair(
        self, uow: UnitOfWork, session_id: uuid.UUID, kind: str, refresh_expires: datetime
    ) -> TokenPair:
        ttl = self._settings.access_token_ttl_s
        refresh, refresh_hash = tokens.new_secret_token("rt")
        await repo.insert_refresh_token(uow, session_id, refresh_hash, refresh_expires)
        access = tokens.issue_access_token(
            self._settings.token_signing_key, session_id, kind, datetime.now(UTC) + timedelta(seconds=ttl)
        )
        return TokenPair(access, refresh, ttl)

    async def refresh(self, refresh_token: str) -> TokenPair:
        async with unit_of_work(self._pool) as uow:
            row = await repo.refresh_token_for_update(uow, tokens.secret_hash(refresh_token))
            now = datetime.now(UTC)
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
                raise Unauthorized("refresh_invalid")
            if row["used_at"] is not None:
                # A rotated token came back: someone holds a copy. End the whole family.
                await repo.revoke_session(uow, row["session_id"], "refresh_token_reused")
                await audit.record(
                    uow,
                    f"{row['principal_kind']}:{row['principal_id']}",
                    "auth.refresh_reuse",
                    f"session:{row['session_id']}",
                    {},
                )
                raise CommitThenRaise(Unauthorized("refresh_invalid"))
            await repo.mark_refresh_used(uow, row["id"])
            return await self._issue_pair(uow, row["session_id"], row["principal_kind"], row["session_expires_at"])

    async def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            return
        async with unit_of_work(self._pool) as uow:
            await repo.revoke_session(uow, principal.session_id, "logout")
            await audit.record(uow, principal.actor, "auth.logout", f"session:{principal.session_id}", {})

    # -- operators -------------------------------------------------------------------------------
    async def _verify_operator(self, uow: UnitOfWork, username: str, password: str, totp: str) -> asyncpg.Record:
        """The operator these credentials prove, or the refusal; the API and the console sign in through it.

        A username no operator has goes exactly the way of a real one: the same password hashing and TOTP
        work, its failures counted and locked alike, the same answers, so nothing tells which accounts
        exist. A TOTP code is accepted once. Failures are also counted per client across usernames
        (guessing); each is audited and committed with the refusal."""
        s = self._settings
        client = current_client()
        now = datetime.now(UTC)
        # Locks in one order everywhere (client, then username), so none waits in a circle.
        await repo.lock_client(uow, "operator-sign-in", client)
        failures = await repo.operator_failures_since(uow, client, now - _OPERATOR_FAILURE_WINDOW)
        wait = rules.wait_seconds(failures, s.operator_failures_per_client_per_hour, _OPERATOR_FAILURE_WINDOW, now)
        if wait is not None:
            log.warning("operator sign-ins refused: too many failures from the client", extra={"client": client})
            raise TooManyRequests("sign_in_rate_limited", headers={"Retry-After": str(wait)})
        name_hash = lookup_hash(s.lookup_hash_key, f"operator-name:{username}")
        locked_until = await repo.lock_sign_in_name(uow, name_hash)
        if locked_until is not None and locked_until > now:
            wait = max(1, int((locked_until - now).total_seconds()))
            raise TooManyRequests("operator_locked", headers={"Retry-After": str(wait)})
        row = await repo.operator_by_username(uow, username)
        if row is not None and row["disabled_at"] is None:
            password_hash, last_step = row["password_hash"], row["totp_last_step"]
            secret = self._cipher.decrypt_text(row["totp_secret_enc"], "operators.totp_secret")
        else:
            password_hash, last_step, secret = _dummy_hash(), None, _DUMMY_TOTP_SECRET
        password_ok = await asyncio.to_thread(_verify_password, password_hash, password)
        step = rules.totp_step(secret, totp, now, last_step)
        if row is None or row["disabled_at"] is not None or not password_ok or step is None:
            await repo.record_operator_failure(uow, name_hash, client, _OPERATOR_LOCK_AFTER, _OPERATOR_LOCK_S)
            subject = f"operator:{row['id']}" if row is not None else "operator:unknown"
            await audit.record(uow, f"client:{client}", "auth.operator_sign_in_failed", subject, {})
            raise CommitThenRaise(Unauthorized("operator_credentials"))
        await repo.operator_signed_in(uow, row["id"], name_hash, step)
        return row

    async def operator_sign_in(self, username: str, password: str, totp: str) -> TokenPair:
        async with unit_of_work(self._pool) as uow:
            row = await self._verify_operator(uow, username, password, totp)
            pair = await self._open_session(uow, "operator", row["id"], None, "console", OPERATOR_SESSION_S)
            actor = f"operator:{row['id']}"
            await audit.record(uow, actor, "auth.operator_sign_in", actor, {"role": row["role"]})
        return pair

    # -- the operator console (a cookie session) -------------------------------------------------
    async def console_sign_in(
        self, username: str, password: str, totp: str, replacing: str | None = None
    ) -> tuple[str, ConsoleSession]:
        """Open a console session; return the cookie's secret (stored hashed) and the session. The session
        of the cookie the browser came with (`replacing`) ends: a new sign-in never leaves an old one behind."""
        secret, secret_hash = tokens.new_secret_token("cs")
        async with unit_of_work(self._pool) as uow:
            row = await self._verify_operator(uow, username, password, totp)
            if replacing:
                await repo.end_console_session(uow, tokens.secret_hash(replacing), "signed_in_again")
            session_id = await repo.create_console_session(
                uow, row["id"], secret_hash, datetime.now(UTC) + _OPERATOR_SESSION
            )
            actor = f"operator:{row['id']}"
            await audit.record(
                uow, actor, "auth.console_sign_in", actor, {"role": row["role"], "operator": row["username"]}
            )
        return secret, self._console_session(session_id, row)

    async def console_session(self, secret: str) -> ConsoleSession | None:
        """The session behind a console cookie, or None (unknown, signed out, idle or expired)."""
        row = await self._pool.fetchrow(
            repo.CONSOLE_SESSION_SQL, tokens.secret_hash(secret), self._settings.console_idle_s
        )
        if row is None or not row["live"]:
            return None
        return self._console_session(row["session_id"], row)

    def _console_session(self, session_id: uuid.UUID, row: asyncpg.Record) -> ConsoleSession:
        principal = Principal(row["role"], row["id"], session_id, username=row["username"])
        return ConsoleSession(
            principal,
            row["display_name"],
            row["locale"],
            tokens.csrf_token(self._settings.token_signing_key, session_id),
        )

    async def set_operator_locale(self, principal: Principal, locale: str) -> None:
        async with unit_of_work(self._pool) as uow:
            await repo.set_operator_locale(uow, principal.subject_id, locale)

    async def create_operator(self, username: str, display_name: str, role: str, password: str) -> str:
        """Create an operator; return the TOTP secret to enrol in an authenticator app (shown once)."""
        if role not in (OPERATOR, AUDITOR, ADMIN):
            raise ValueError(f"role must be operator, auditor or admin, not {role!r}")
        if len(password) < 12:
            raise ValueError("the password must have at least 12 characters")
        secret = pyotp.random_base32()
        password_hash = await asyncio.to_thread(_hasher.hash, password)
        async with unit_of_work(self._pool) as uow:
            operator_id = await repo.insert_operator(
                uow,
                username,
                display_name,
                role,
                password_hash,
                self._cipher.encrypt_text(secret, "operators.totp_secret"),
            )
            await audit.record(uow, "system:cli", "operator.created", f"operator:{operator_id}", {"role": role})
        return secret

    async def create_terminal(self, merchant: str) -> str:
        """Create a terminal for a merchant; return its API key (shown once, stored hashed)."""
        terminal_id = uuid.uuid4()
        key, key_hash = tokens.new_terminal_key(terminal_id)
        async with unit_of_work(self._pool) as uow:
            await repo.insert_terminal(uow, terminal_id, merchant, key_hash)
            await audit.record(uow, "system:cli", "terminal.created", f"terminal:{terminal_id}", {"merchant": merchant})
        return key

    async def support_token(self, *, phone: str | None = None, operator: str | None = None) -> TokenPair:
        """An access token for support staff and tests (`socialcard token`), audited.

        Its session has no device, so it can read and act as the person but never mint payment QR codes.
        """
        async with unit_of_work(self._pool) as uow:
            if operator is not None:
                principal_id = await repo.operator_id(uow, operator)
                if principal_id is None:
                    raise LookupError(f"no operator named {operator}")
                kind = "operator"
            elif phone is not None and PHONE.fullmatch(phone):
                principal_id, kind = await repo.upsert_account(uow, phone), "account"
            else:
                raise LookupError("give an operator username or an 11-digit phone number")
            pair = await self._open_session(
                uow, kind, principal_id, None, "support", self._settings.refresh_token_ttl_s
            )
            await audit.record(uow, "system:cli", "auth.support_token", f"{kind}:{principal_id}", {})
        return pair

    # -- every request ---------------------------------------------------------------------------
    async def resolve(self, credential: str) -> Principal | None:
        """The caller behind a bearer credential, or None when it is not (or no longer) valid."""
        if credential.startswith("tk_"):
            parsed = tokens.split_terminal_key(credential)
            if parsed is None:
                return None
            row = await self._pool.fetchrow(repo.TERMINAL_SQL, parsed[0])
            if row is None or not hmac.compare_digest(row["key_hash"], parsed[1]):
                return None
            return Principal(TERMINAL, parsed[0], merchant=row["merchant"])
        claims = tokens.parse_access_token(self._settings.token_signing_key, credential, datetime.now(UTC))
        if claims is None:
            return None
        if claims.kind == "account":
            row = await self._pool.fetchrow(repo.ACCOUNT_SESSION_SQL, claims.session_id)
            if row is None:
                return None
            return Principal(
                CARDHOLDER, row["account_id"], claims.session_id, row["person_id"], row["phone"], row["device_id"]
            )
        row = await self._pool.fetchrow(repo.OPERATOR_SESSION_SQL, claims.session_id)
        if row is None:
            return None
        return Principal(row["role"], row["operator_id"], claims.session_id, username=row["username"])


@functools.cache
def _dummy_hash() -> str:
    """Hashed on first use, not at import: every process (and CLI command) would pay for it."""
    return _hasher.hash("not a real password")


def _verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
