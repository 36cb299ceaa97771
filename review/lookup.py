"""What the console reads besides the review queue: people (every search and look audited) and the audit log."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import asyncpg

from auth.service import PHONE
from cards.numbers import luhn_check_digit
from core import national_id as nid
from core.errors import BadRequest, NotFound
from core.principal import Principal
from infra import audit
from infra.crypto import lookup_hash, mask_national_id, mask_phone
from infra.db import unit_of_work
from payments.disbursement.service import DisbursementService
from review import lookup_repository as repo

_CARD = re.compile(r"[0-9]{12}")
HISTORY = 24  # rows of each history a person's page shows
AUDIT_PAGE = 50


@dataclass(frozen=True)
class PersonQuery:
    kind: str  # national_id, phone or card_number
    value: str  # normalised
    shown: str  # what the audit log and the page may show: masked

    @classmethod
    def parse(cls, typed: str) -> PersonQuery:
        """A full national ID number, an 11-digit mobile number or a 12-digit card number; nothing partial,
        so the console cannot be used to browse people."""
        text = re.sub(r"[\s-]", "", typed).upper()
        if len(text) == 18:
            if nid.validate(text) is not None:
                raise BadRequest("national_id_invalid")
            return cls("national_id", text, mask_national_id(text))
        if PHONE.fullmatch(text):
            return cls("phone", text, mask_phone(text))
        if _CARD.fullmatch(text):
            if luhn_check_digit(text[:11]) != text[11]:
                raise BadRequest("card_number_invalid")
            return cls("card_number", text, text)
        raise BadRequest("person_query_invalid")


@dataclass(frozen=True)
class PersonFile:
    person: asyncpg.Record
    checks: list[asyncpg.Record]
    payments: list[asyncpg.Record]
    notifications: list[asyncpg.Record]


@dataclass(frozen=True)
class AuditPage:
    rows: list[asyncpg.Record]
    next_before: int | None
    verified_rows: int | None  # the chain is checked on the newest page only
    broken_at: int | None
    broken_reason: str | None


class ConsoleService:
    def __init__(self, pool: asyncpg.Pool, lookup_key: bytes, disbursements: DisbursementService) -> None:
        self._pool = pool
        self._lookup_key = lookup_key
        self._disbursements = disbursements

    async def search(self, principal: Principal, query: PersonQuery) -> list[asyncpg.Record]:
        async with unit_of_work(self._pool) as uow:
            if query.kind == "national_id":
                found = await repo.persons_by_national_id_hash(uow, lookup_hash(self._lookup_key, query.value))
            elif query.kind == "phone":
                found = await repo.persons_by_phone(uow, query.value)
            else:
                found = await repo.persons_by_card_number(uow, query.value)
            await audit.record(
                uow,
                principal.actor,
                "person.searched",
                f"{query.kind}:{query.shown}",
                {"found": len(found), **principal.named},
            )
        return found

    async def person(self, principal: Principal, person_id: uuid.UUID) -> PersonFile:
        # Read before the transaction takes its connection: the service takes one of its own, and a
        # request holding one while waiting for another would deadlock a pool full of such requests.
        payments = await self._disbursements.payments(person_id, None, HISTORY)
        async with unit_of_work(self._pool) as uow:
            person = await repo.person(uow, person_id)
            if person is None:
                raise NotFound("person_not_found")
            found = PersonFile(
                person,
                await repo.checks_of(uow, person_id, HISTORY),
                payments,
                await repo.notifications_of(uow, person_id, HISTORY),
            )
            await audit.record(uow, principal.actor, "person.viewed", f"person:{person_id}", principal.named)
        return found

    async def audit_log(self, principal: Principal, before_id: int | None) -> AuditPage:
        """A page of the log, newest first; with the newest, the whole chain checked from its first row
        (reading every row, so not again for each older page)."""
        rows = await repo.audit_page(self._pool, before_id, AUDIT_PAGE + 1)
        count, broken = await audit.verify(self._pool) if before_id is None else (None, None)
        async with unit_of_work(self._pool) as uow:
            seen = {"rows": count} if before_id is None else {"before": before_id}
            await audit.record(uow, principal.actor, "audit.viewed", "audit_log", {**seen, **principal.named})
        more = len(rows) > AUDIT_PAGE
        rows = rows[:AUDIT_PAGE]
        return AuditPage(
            rows,
            rows[-1]["id"] if more else None,
            count,
            broken.row_id if broken else None,
            broken.reason if broken else None,
        )
