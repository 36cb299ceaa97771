"""The SMS channel: a provider port and its adapters.

The development provider records each message in the database so `socialcard dev sms` (and the
tests) can read sign-in codes; the log provider only writes a log line. A real gateway adapter
implements the same port.
"""

from __future__ import annotations

import logging
from typing import Protocol

from infra.crypto import mask_phone
from infra.db import Db, UnitOfWork

log = logging.getLogger(__name__)


class SmsNotSent(Exception):
    """A provider's refusal that may pass (throttled, gateway down): the dispatcher tries again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SmsProvider(Protocol):
    async def send(self, uow: UnitOfWork, phone: str, body: str) -> None:
        """Send, or raise SmsNotSent. The dev provider writes through `uow` (the dispatcher's transaction)."""
        ...


class DevSmsProvider:
    async def send(self, uow: UnitOfWork, phone: str, body: str) -> None:
        await uow.execute("INSERT INTO dev_sms_messages (phone, body) VALUES ($1, $2)", phone, body)
        log.info("sms recorded by the development provider", extra={"phone": mask_phone(phone)})


class LogSmsProvider:
    async def send(self, uow: UnitOfWork, phone: str, body: str) -> None:
        log.info("sms not sent (log provider)", extra={"phone": mask_phone(phone), "chars": len(body)})


def sms_provider(name: str) -> SmsProvider:
    return DevSmsProvider() if name == "dev" else LogSmsProvider()


async def recorded_messages(db: Db, phone: str | None, limit: int = 20) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        """SELECT phone, body, created_at FROM dev_sms_messages
           WHERE $1::text IS NULL OR phone = $1 ORDER BY id DESC LIMIT $2""",
        phone,
        limit,
    )
    return [(r["phone"], r["body"], r["created_at"].isoformat()) for r in rows]
