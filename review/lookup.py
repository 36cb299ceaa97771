"""What the console reads besides the review queue: people (every search and look audited) and the audit log."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import asyncpg

from auth.service import PHONE
from cards.numbers import luhn_check_digit
from core import national_id as nid
from core.errors import BadRequest, NotFound
from core.principal import Principal
from infra import audit, audit_checkpoints
from infra.audit_checkpoints import OnwardCheck
from infra.crypto import lookup_hash, mask_national_id, mask_phone
from infra.db import unit_of_work
from notifications.rules import LOCAL_TZ
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
class AuditFilter:
    """What the audit page narrows the log to (each given one at once); the days are calendar days in
    China, where the console shows its times, both included."""

    actor: str = ""
    action: str = ""
    subject: str = ""
    first_day: date | None = None
    last_day: date | None = None

    @property
    def since(self) -> datetime | None:
        return _midnight_in_china(self.first_day) if self.first_day else None

    @property
    def until(self) -> datetime | None:
        return _midnight_in_china(self.last_day + timedelta(days=1)) if self.last_day else None

    @property
    def given(self) -> dict[str, str]:
        """The filters given, by their names in the page's query (and in the audit row of the look)."""
        days = (("from", self.first_day), ("to", self.last_day))
        return {
            **{
                name: value
                for name, value in (("actor", self.actor), ("action", self.action), ("subject", self.subject))
                if value
            },
            **{name: value.isoformat() for name, value in days if value},
        }


def _midnight_in_china(day: date) -> datetime:
    return datetime.combine(day, time(), LOCAL_TZ)


@dataclass(frozen=True)
class AuditPage:
    rows: list[asyncpg.Record]
    next_before: str | None  # the last row shown, chain/seq, when there are older ones
    chain: OnwardCheck  # checked from the newest trusted checkpoint to the head, with every page
    actions: list[str]  # every action in the log, to filter by


class ConsoleService:
    def __init__(
        self, pool: asyncpg.Pool, lookup_key: bytes, audit_key: bytes, disbursements: DisbursementService
    ) -> None:
        self._pool = pool
        self._lookup_key = lookup_key
        self._audit_key = audit_key
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

    async def audit_log(
        self, principal: Principal, shown: AuditFilter, before_row: tuple[int, int] | None
    ) -> AuditPage:
        """A page of the log, newest first across the chains, narrowed by `shown`, from just below row
        `before_row` (chain, seq); with it, every chain checked from its newest trusted checkpoint to its
        head (infra.audit_checkpoints)."""
        at = await repo.audit_row_at(self._pool, *before_row) if before_row is not None else None
        before = (at, *before_row) if at is not None and before_row is not None else None
        rows = (
            []  # below a row that is not there: nothing
            if before_row is not None and before is None
            else await repo.audit_page(
                self._pool,
                actor=shown.actor or None,
                action=shown.action or None,
                subject=shown.subject or None,
                since=shown.since,
                until=shown.until,
                before=before,
                limit=AUDIT_PAGE + 1,
            )
        )
        chain = await audit_checkpoints.check_onward(
            self._pool, self._audit_key, record_after=audit_checkpoints.LOOK_RECORDS_AFTER
        )
        actions = await repo.audit_actions(self._pool)
        async with unit_of_work(self._pool) as uow:
            shown_before = {"before": audit.row_name(*before_row)} if before_row is not None else {}
            seen = {"rows": chain.rows, **shown_before, **shown.given}
            await audit.record(uow, principal.actor, "audit.viewed", "audit_log", {**seen, **principal.named})
        more = len(rows) > AUDIT_PAGE
        rows = rows[:AUDIT_PAGE]
        last = audit.row_name(rows[-1]["chain"], rows[-1]["seq"]) if more else None
        return AuditPage(rows, last, chain, actions)
