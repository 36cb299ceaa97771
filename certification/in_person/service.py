"""Certification for those the face check leaves out, and appeals against what it decided.

A pensioner who is bedridden, blind or without a phone that films asks from the app (or by phone to
an operator, who uses the same calls) for a home visit or a service-point appointment; an operator
schedules it, sees the person and records the certification in person with a reason. A pensioner
whose month was withheld, or whose check failed, appeals with a statement and is promised an answer
within fifteen days; the operator who upholds it certifies the person. Each step is audited and the
person is told. A death record always wins: nobody recorded dead is certified by any of these.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from certification import repository as certification_repo
from certification.in_person import repository as repo
from certification.in_person import rules
from certification.rules import day_in_china
from core import national_id as nid
from core.errors import BadRequest, Conflict, NotFound
from core.justification import stated
from core.principal import Principal
from infra import audit
from infra.config import Settings
from infra.crypto import lookup_hash
from infra.db import UnitOfWork, unit_of_work
from notifications.outbox import publish_event
from notifications.rules import LOCAL_TZ


@dataclass(frozen=True)
class InPersonCertified:
    id: uuid.UUID
    person_id: uuid.UUID
    masked_national_id: str
    method: str
    eligible_until: date


@dataclass(frozen=True)
class OpenItems:
    """Requests or appeals waiting for an operator, and the time the list was read (for overdue)."""

    rows: list[asyncpg.Record]
    now: datetime


class InPersonService:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._lookup_key = settings.lookup_hash_key

    # -- the pensioner ----------------------------------------------------------------------------
    async def request(self, principal: Principal, kind: str, note: str) -> asyncpg.Record:
        """Ask for a home visit or an appointment; asking again while one is open returns that one."""
        person_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            await self._alive(uow, person_id)
            if (open_one := await repo.open_request(uow, person_id)) is not None:
                return open_one
            row = await repo.insert_request(uow, person_id, kind, note.strip())
            await audit.record(uow, principal.actor, "in_person.requested", f"person:{person_id}", {"kind": kind})
        return row

    async def requests(self, principal: Principal) -> list[asyncpg.Record]:
        return await repo.requests_of(self._pool, principal.linked_person)

    async def cancel(self, principal: Principal, request_id: uuid.UUID) -> asyncpg.Record:
        person_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            row = await repo.request_by_id(uow, request_id)
            if row is None or row["person_id"] != person_id:
                raise NotFound("request_not_found")
            if row["state"] not in rules.OPEN_REQUEST:
                raise Conflict("request_closed")
            closed = await repo.close_request(uow, person_id, request_id, "cancelled", principal.actor)
            await audit.record(
                uow, principal.actor, "in_person.cancelled", f"person:{person_id}", {"request": str(request_id)}
            )
        return closed

    async def appeal(self, principal: Principal, subject: str, subject_id: uuid.UUID, statement: str) -> asyncpg.Record:
        """Appeal a withheld month or a failed check; appealing it again while open returns that appeal."""
        person_id = principal.linked_person
        async with unit_of_work(self._pool) as uow:
            await certification_repo.lock_person(uow, person_id)
            if not await self._appealable(uow, person_id, subject, subject_id):
                raise BadRequest("appeal_subject_invalid")
            if (open_one := await repo.open_appeal(uow, person_id, subject, subject_id)) is not None:
                return open_one
            row = await repo.insert_appeal(
                uow, person_id, subject, subject_id, statement.strip(), rules.APPEAL_ANSWER_DAYS
            )
            await audit.record(
                uow,
                principal.actor,
                "appeal.submitted",
                f"person:{person_id}",
                {"appeal": str(row["id"]), "subject": subject},
            )
            due = row["due_at"].astimezone(LOCAL_TZ).date().isoformat()
            await publish_event(uow, "appeal.received", person_id, {"due_date": due}, f"appeal:{row['id']}:received")
        return row

    async def appeals(self, principal: Principal) -> list[asyncpg.Record]:
        return await repo.appeals_of(self._pool, principal.linked_person)

    # -- operators --------------------------------------------------------------------------------
    async def open_requests(self, limit: int) -> OpenItems:
        return OpenItems(await repo.open_requests(self._pool, limit), datetime.now(UTC))

    async def schedule(self, operator: Principal, request_id: uuid.UUID, at: datetime, place: str) -> asyncpg.Record:
        async with unit_of_work(self._pool) as uow:
            row = await repo.request_by_id(uow, request_id)
            if row is None:
                raise NotFound("request_not_found")
            if row["state"] not in rules.OPEN_REQUEST:
                raise Conflict("request_closed")
            if (refusal := rules.schedule_refusal(at, datetime.now(UTC))) is not None:
                raise BadRequest(refusal)
            person_id = row["person_id"]
            scheduled = await repo.schedule(uow, person_id, request_id, at, place.strip(), operator.actor)
            await audit.record(
                uow,
                operator.actor,
                "in_person.scheduled",
                f"person:{person_id}",
                {"request": str(request_id), "at": at.isoformat(), "place": place.strip(), **operator.named},
            )
            # Each new time is told: a rescheduled visit is a notice of its own.
            await publish_event(
                uow,
                "in_person.scheduled",
                person_id,
                {"scheduled_for": at.isoformat(), "place": place.strip()},
                f"in_person:{request_id}:{at.isoformat()}",
            )
        return scheduled

    async def certify(
        self, operator: Principal, national_id: str, method: str, reason: str, request_id: uuid.UUID | None
    ) -> InPersonCertified:
        """The operator saw the person (at home or at a service point) and certifies them, with a reason;
        the person's open request, if any, is closed with it."""
        reason = stated(reason)
        national_id = nid.normalise(national_id)
        if nid.validate(national_id) is not None:
            raise BadRequest("national_id_invalid")
        async with unit_of_work(self._pool) as uow:
            person = await repo.person_by_national_id_hash(uow, lookup_hash(self._lookup_key, national_id))
            if person is None:
                raise NotFound("person_not_found")
            return await self._certify_in_person(uow, operator, person, method, reason, request_id)

    async def certify_request(self, operator: Principal, request_id: uuid.UUID, reason: str) -> InPersonCertified:
        """The visit or appointment asked for took place: the person is certified the way they asked."""
        reason = stated(reason)
        async with unit_of_work(self._pool) as uow:
            request = await repo.request_by_id(uow, request_id)
            if request is None:
                raise NotFound("request_not_found")
            person = await repo.person_by_id(uow, request["person_id"])
            return await self._certify_in_person(uow, operator, person, request["kind"], reason, request_id)

    async def _certify_in_person(
        self,
        uow: UnitOfWork,
        operator: Principal,
        person: asyncpg.Record,
        method: str,
        reason: str,
        request_id: uuid.UUID | None,
    ) -> InPersonCertified:
        person_id: uuid.UUID = person["id"]
        await self._alive(uow, person_id)
        if request_id is not None:
            request = await repo.request_by_id(uow, request_id)
            if request is None or request["person_id"] != person_id:
                raise NotFound("request_not_found")
            if request["state"] not in rules.OPEN_REQUEST:
                raise Conflict("request_closed")
        else:
            request = await repo.open_request(uow, person_id)
        certification_id, until = await self._certify(
            uow, operator, person_id, method, reason, request["id"] if request else None
        )
        if request is not None:
            await repo.close_request(uow, person_id, request["id"], "certified", operator.actor)
        return InPersonCertified(certification_id, person_id, person["national_id_masked"], method, until)

    async def open_appeals(self, limit: int) -> OpenItems:
        return OpenItems(await repo.open_appeals(self._pool, limit), datetime.now(UTC))

    async def decide_appeal(
        self, operator: Principal, appeal_id: uuid.UUID, outcome: str, reason: str
    ) -> asyncpg.Record:
        """Uphold (the person is certified, so what was withheld is paid back by the next run) or reject,
        with a reason the person is told."""
        reason = stated(reason)
        async with unit_of_work(self._pool) as uow:
            appeal = await repo.appeal_by_id(uow, appeal_id)
            if appeal is None:
                raise NotFound("appeal_not_found")
            if appeal["state"] != "submitted":
                raise Conflict("appeal_decided")
            person_id: uuid.UUID = appeal["person_id"]
            payload: dict[str, str] = {}
            if outcome == "upheld":
                await self._alive(uow, person_id)
                _, until = await self._certify(uow, operator, person_id, "appeal", reason, None)
                payload["eligible_until"] = until.isoformat()
            else:
                payload["outcome_reason"] = reason
            decided = await repo.decide_appeal(uow, person_id, appeal_id, outcome, operator.actor, reason)
            await audit.record(
                uow,
                operator.actor,
                f"appeal.{outcome}",
                f"person:{person_id}",
                {"appeal": str(appeal_id), "reason": reason, **operator.named},
            )
            await publish_event(uow, f"appeal.{outcome}", person_id, payload, f"appeal:{appeal_id}:{outcome}")
        return decided

    # -- shared -----------------------------------------------------------------------------------
    async def _alive(self, uow: UnitOfWork, person_id: uuid.UUID) -> None:
        if await certification_repo.lock_person(uow, person_id) != "alive":
            raise Conflict("person_deceased")

    async def _appealable(self, uow: UnitOfWork, person_id: uuid.UUID, subject: str, subject_id: uuid.UUID) -> bool:
        if subject == "payment":
            payment = await repo.withheld_payment(uow, person_id, subject_id)
            return payment is not None and rules.appealable_payment(payment["status"], payment["back_paid"])
        status = await repo.check_status(uow, person_id, subject_id)
        return status is not None and rules.appealable_check(status)

    async def _certify(
        self,
        uow: UnitOfWork,
        operator: Principal,
        person_id: uuid.UUID,
        method: str,
        reason: str,
        request_id: uuid.UUID | None,
    ) -> tuple[uuid.UUID, date]:
        """Eligibility extended as a face pass extends it; recorded, audited and told."""
        today = day_in_china(datetime.now(UTC))
        until = await certification_repo.extend_eligibility(uow, person_id, today)
        certification_id = await repo.insert_certification(
            uow, person_id, method, request_id, operator.actor, reason, today, until
        )
        await audit.record(
            uow,
            operator.actor,
            "certification.in_person",
            f"person:{person_id}",
            {"method": method, "reason": reason, "eligible_until": until.isoformat(), **operator.named},
        )
        await publish_event(
            uow,
            "certification.passed",
            person_id,
            {"eligible_until": until.isoformat(), "decided_by": "in_person", "method": method},
            f"in_person_certification:{certification_id}",
        )
        return certification_id, until
