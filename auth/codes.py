"""SMS one-time codes, for signing in, for cancelling a card's loss report and for an elder's consent
to a relative's help.

Every code sent counts against three budgets kept in PostgreSQL, so they hold across API processes:
the phone's (`otp_max_per_hour`, sliding), the requesting client's whatever the phones
(`otp_per_client_per_hour`, sliding: SMS pumping sends to many numbers from one place) and all
clients' together (`otp_total_per_hour`, per clock hour: the ceiling on what SMS can cost).
A code is for one purpose and is redeemed once.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from auth import repository as repo
from auth import rules, tokens
from auth.client import current_client
from core.errors import BadRequest, TooManyRequests
from infra.config import Settings
from infra.db import CommitThenRaise, UnitOfWork, unit_of_work
from notifications.sms import SmsProvider
from notifications.templates import sms_text

SIGN_IN = "sign_in"
CARD_RECOVERY = "card_recovery"
# Sent to an elder's phone; the elder hands it to the relative who asked to help them certify.
RELATIVE_CONSENT = "relative_consent"
_HOUR = timedelta(hours=1)

log = logging.getLogger(__name__)


def _limited(code: str, wait: int) -> TooManyRequests:
    return TooManyRequests(code, minutes=max(1, (wait + 59) // 60), headers={"Retry-After": str(wait)})


async def issue(
    pool: asyncpg.Pool,
    settings: Settings,
    sms: SmsProvider,
    phone: str,
    purpose: str,
    locale: str,
    context: Mapping[str, Any] | None = None,
) -> int:
    """Send a new code for `purpose` to `phone`; its lifetime in seconds. `context`: what else the
    purpose's text names (who asked for the code)."""
    client = current_client()
    now = datetime.now(UTC)
    # The hourly total is taken first, in a statement of its own: its one row is then locked for that
    # statement only, not through the SMS gateway's answer, which would queue every code of every client
    # behind it. A code not sent gives its place back; one whose process dies keeps it (the ceiling errs low).
    hour = await repo.take_from_hourly_total(pool, settings.otp_total_per_hour)
    if hour is None:
        log.warning("sms codes refused: the hourly total is spent", extra={"total": settings.otp_total_per_hour})
        raise _limited("otp_unavailable", rules.seconds_to_next_hour(now))
    try:
        async with unit_of_work(pool) as uow:
            # Locks in one order everywhere (phone, then client), so none waits in a circle.
            await repo.lock_phone(uow, phone)
            sent = await repo.codes_sent_since(uow, phone, now - _HOUR)
            if (wait := rules.wait_seconds(sent, settings.otp_max_per_hour, _HOUR, now)) is not None:
                raise _limited("otp_rate_limited", wait)
            await repo.lock_client(uow, "otp", client)
            sent = await repo.client_codes_since(uow, client, now - _HOUR)
            if (wait := rules.wait_seconds(sent, settings.otp_per_client_per_hour, _HOUR, now)) is not None:
                log.warning("sms codes refused: the client's hourly budget is spent", extra={"client": client})
                raise _limited("otp_client_rate_limited", wait)
            code = tokens.otp_code()
            code_hash = tokens.otp_hash(settings.lookup_hash_key, phone, code)
            expires_at = now + timedelta(seconds=settings.otp_ttl_s)
            await repo.insert_code(uow, phone, purpose, client, code_hash, expires_at)
            # Each purpose has its own wording: a person asked for a recovery code they did not want
            # learns from the text what it would do.
            params = {**(context or {}), "code": code, "minutes": settings.otp_ttl_s // 60}
            text = sms_text(f"{purpose}.code", locale, params)
            await sms.send(uow, phone, text)
    except Exception:
        await repo.give_back_to_hourly_total(pool, hour)
        raise
    return settings.otp_ttl_s


async def redeem(
    uow: UnitOfWork, settings: Settings, phone: str, purpose: str, code: str, *, issued_after: datetime | None = None
) -> None:
    """Use up the phone's latest code for `purpose`, or refuse; only a code sent after `issued_after` counts.
    Call it before changing anything else: a wrong code is counted, and the caller's transaction is
    committed with the refusal (CommitThenRaise) so that the count stays."""
    await repo.lock_phone(uow, phone)
    row = await repo.latest_open_code(uow, phone, purpose)
    if (
        row is None
        or row["expires_at"] <= datetime.now(UTC)
        or (issued_after is not None and row["created_at"] <= issued_after)
    ):
        raise BadRequest("otp_expired")
    if row["attempts"] >= settings.otp_max_attempts:
        raise BadRequest("otp_locked")
    if not hmac.compare_digest(row["code_hash"], tokens.otp_hash(settings.lookup_hash_key, phone, code)):
        attempts = await repo.count_failed_attempt(uow, row["id"])
        left = settings.otp_max_attempts - attempts
        raise CommitThenRaise(BadRequest("otp_invalid", left=left) if left > 0 else BadRequest("otp_locked"))
    await repo.consume_code(uow, row["id"])
