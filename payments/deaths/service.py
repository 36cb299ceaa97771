"""Death records: landing the civil-affairs feed (each line in its own transaction, with its audit
entry) and an operator's reversal of a wrong report."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg

from cards import repository as cards
from core import national_id as nid
from core.errors import BadRequest, Conflict, NotFound
from core.principal import Principal
from core.records import RowError, RowProgress, detect_format
from infra import audit
from infra.crypto import lookup_hash
from infra.db import UnitOfWork, unit_of_work
from notifications.outbox import publish_event
from payments.deaths import repository as repo
from payments.deaths.feed import DeathReport, parse_feed
from payments.recovery import service as recovery


@dataclass
class DeathImportReport:
    recorded: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class Reversal:
    """A person's state once a wrong death report is reversed."""

    person_id: uuid.UUID
    masked_national_id: str
    vital_status: str
    card_status: str | None
    entitlement_status: str | None
    overpayments_cancelled: int
    months_restored: list[date]


class DeathRecords:
    def __init__(self, pool: asyncpg.Pool, lookup_key: bytes) -> None:
        self._pool = pool
        self._lookup_key = lookup_key

    async def import_file(self, path: Path, actor: str, progress: RowProgress | None = None) -> DeathImportReport:
        """Record every good line of a CSV or JSON-lines feed; `actor` is who the audit log names."""
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
        reports, errors = parse_feed(text, detect_format(path.name), datetime.now(UTC).date())
        result = DeathImportReport(errors=list(errors))
        for done, report in enumerate(reports, 1):
            outcome = await self._record(report, f"{path.name}:{report.line}", actor)
            if isinstance(outcome, RowError):
                result.errors.append(outcome)
            else:
                setattr(result, outcome, getattr(result, outcome) + 1)
            if progress:
                progress(done, len(reports))
        result.errors.sort(key=lambda e: e.line)
        return result

    async def _record(self, report: DeathReport, source: str, actor: str) -> str | RowError:
        """The line's outcome (recorded; updated: a new date for the standing record; unchanged) or its error."""
        async with unit_of_work(self._pool) as uow:
            person = await repo.lock_person(uow, lookup_hash(self._lookup_key, report.national_id))
            if person is None:
                return RowError(report.line, "national_id", "no person with this national ID")
            if report.date_of_death < person["birth_date"]:
                return RowError(report.line, "date_of_death", "is before the person's birth date")
            person_id: uuid.UUID = person["id"]
            standing = await repo.standing_record(uow, person_id)
            if standing is not None and standing["date_of_death"] == report.date_of_death:
                return "unchanged"
            details: dict[str, object] = {
                "masked_national_id": person["national_id_masked"],
                "date_of_death": report.date_of_death.isoformat(),
                "source": source,
            }
            if standing is not None:
                record_id: uuid.UUID = standing["id"]
                await repo.change_date(uow, person_id, record_id, report.date_of_death, source)
                details["previous_date_of_death"] = standing["date_of_death"].isoformat()
                outcome = "updated"
            else:
                record_id = await self._stop(uow, person_id, report.date_of_death, source)
                outcome = "recorded"
            await repo.set_vital_status(uow, person_id, report.date_of_death)
            owed = await repo.recompute_overpayments(uow, person_id, record_id)
            await recovery.sync_case(uow, person_id, record_id, actor)
            details |= {
                "death_record_id": str(record_id),
                "overpayments": owed["payments"],
                "overpaid_fen": owed["amount_fen"],
            }
            await audit.record(uow, actor, "person.death_recorded", f"person:{person_id}", details)
        return outcome

    async def _stop(self, uow: UnitOfWork, person_id: uuid.UUID, died: date, source: str) -> uuid.UUID:
        """A new death record: the card is cancelled (its status kept for a reversal) and the pension stopped."""
        card = await cards.card_of_person(uow, person_id, lock=True)
        record_id = await repo.create_record(uow, person_id, died, source, card["status"] if card else None)
        if card is not None and card["status"] != "cancelled":
            await cards.set_status(uow, person_id, card["id"], "cancelled")
        await repo.set_entitlement_status(uow, person_id, "stopped")
        return record_id

    async def reverse(self, principal: Principal, national_id: str, reason: str) -> Reversal:
        """Undo a wrong death report: the person, card and pension as they were, the claims cancelled,
        and the months skipped meanwhile withheld, for the next run to back-pay."""
        national_id = nid.normalise(national_id)
        if nid.validate(national_id) is not None:
            raise BadRequest("national_id_invalid")
        async with unit_of_work(self._pool) as uow:
            person = await repo.lock_person(uow, lookup_hash(self._lookup_key, national_id))
            if person is None:
                raise NotFound("person_not_found")
            person_id: uuid.UUID = person["id"]
            record = await repo.standing_record(uow, person_id)
            if record is None:
                raise Conflict("not_deceased")
            record_id: uuid.UUID = record["id"]
            died: date = record["date_of_death"]
            await repo.reverse_record(uow, person_id, record_id, principal.actor, reason)
            await repo.set_vital_status(uow, person_id, None)
            card = await cards.card_of_person(uow, person_id, lock=True)
            card_status = card["status"] if card else None
            if card is not None and record["card_status_before"] not in (None, card_status):
                card_status = record["card_status_before"]
                await cards.set_status(uow, person_id, card["id"], card_status)
            entitlement_status = await repo.set_entitlement_status(uow, person_id, "active")
            # The case first, while it still sees what was owed (for its audit entry).
            case = await recovery.cancel_case(uow, person_id, record_id, principal.actor, reason)
            cancelled = await repo.cancel_overpayments(uow, person_id, record_id)
            months = await repo.restore_withheld_months(uow, person_id, died)
            restored = [m.isoformat() for m in months]
            await publish_event(
                uow,
                "death.reversed",
                person_id,
                {"death_record_id": str(record_id), "months_restored": restored},
                f"death.reversed:{record_id}",
            )
            await audit.record(
                uow,
                principal.actor,
                "person.death_reversed",
                f"person:{person_id}",
                {
                    "masked_national_id": person["national_id_masked"],
                    "death_record_id": str(record_id),
                    "date_of_death": died.isoformat(),
                    "reason": reason,
                    "card_status": card_status,
                    "overpayments_cancelled": cancelled,
                    "recovery_case_cancelled": case,
                    "months_restored": restored,
                },
            )
        return Reversal(
            person_id=person_id,
            masked_national_id=person["national_id_masked"],
            vital_status="alive",
            card_status=card_status,
            entitlement_status=entitlement_status,
            overpayments_cancelled=cancelled,
            months_restored=months,
        )
