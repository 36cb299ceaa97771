"""Evidence of life: landing the feeds, the silent pass that confirms persons from them, and the
trail that explains each confirmation to the person, to operators and in the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from certification.evidence import repository as repo
from certification.evidence.feed import EvidenceReport, parse_feed
from certification.evidence.rules import Evidence, EvidenceRule, confirm
from certification.rules import day_in_china, extended_until
from core.errors import NotFound
from core.principal import Principal
from core.records import RowError, RowProgress, detect_format
from infra import audit, jobs
from infra.config import Settings
from infra.crypto import lookup_hash
from infra.db import Db, UnitOfWork, unit_of_work
from notifications.outbox import queue_confirmations_announcement

log = logging.getLogger(__name__)

SILENT_JOB = "certification.silent_pass"
SILENT_ACTOR = "system:silent-pass"
IMPORT_CHUNK = 5_000  # feed lines per transaction
TRAIL_LIMIT = 20  # confirmations shown
EVENTS_LIMIT = 200  # recent events shown to operators


@dataclass(frozen=True)
class ReadAhead:
    """The silent pass's next batch, being read while the current one is written."""

    after: uuid.UUID
    rows: asyncio.Future[list[asyncpg.Record]]


@dataclass
class EvidenceImportReport:
    recorded: int = 0
    unchanged: int = 0  # recorded before (same source and reference), or repeated within the file
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """One evidence row: what a source says the person did on a day."""

    id: uuid.UUID
    source: str
    occurred_on: date
    reference: str


@dataclass(frozen=True)
class Confirmation:
    pass_id: uuid.UUID
    confirmed_on: date
    previous_until: date | None
    eligible_until: date
    evidence: list[Event]


@dataclass(frozen=True)
class EvidenceTrail:
    person_id: uuid.UUID
    masked_national_id: str
    vital_status: str
    eligible_until: date | None
    confirmations: list[Confirmation]
    events: list[Event]  # every recent event, for operators; empty in the person's own view


@dataclass(frozen=True)
class SilentPass:
    id: uuid.UUID
    run_on: date
    due_by: date
    rule: dict[str, Any]
    state: str
    scanned: int
    confirmed: int
    requested_by: str
    started_at: datetime
    completed_at: datetime | None


def _pass_of(row: asyncpg.Record) -> SilentPass:
    return SilentPass(**{name: row[name] for name in SilentPass.__dataclass_fields__})


def _event(stored: dict[str, Any]) -> Event:
    return Event(
        uuid.UUID(stored["id"]), stored["source"], date.fromisoformat(stored["occurred_on"]), stored["reference"]
    )


class EvidenceService:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._lookup_key = settings.lookup_hash_key
        self._rule = EvidenceRule(
            frozenset(settings.evidence_sources),
            settings.evidence_within_days,
            settings.evidence_min_events,
            settings.evidence_min_sources,
        )
        self._horizon = timedelta(days=settings.silent_pass_horizon_days)
        self._batch = settings.silent_pass_batch

    # -- feeds -------------------------------------------------------------------------------------
    async def import_file(
        self, path: Path, actor: str, source: str | None = None, progress: RowProgress | None = None
    ) -> EvidenceImportReport:
        """Land every good line of a CSV or JSON-lines feed; `source` for lines that name none."""
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
        return await self.import_text(text, detect_format(path.name), path.name, actor, source, progress)

    async def import_text(
        self,
        text: str,
        fmt: str,
        feed: str,
        actor: str,
        source: str | None = None,
        progress: RowProgress | None = None,
    ) -> EvidenceImportReport:
        parsed = parse_feed(text, fmt, source, day_in_china(datetime.now(UTC)))
        report = EvidenceImportReport(unchanged=parsed.repeated, errors=list(parsed.errors))
        for start in range(0, len(parsed.reports), IMPORT_CHUNK):
            await self._land(parsed.reports[start : start + IMPORT_CHUNK], feed, actor, report)
            if progress:
                progress(min(start + IMPORT_CHUNK, len(parsed.reports)), len(parsed.reports))
        report.errors.sort(key=lambda e: e.line)
        return report

    async def _land(self, chunk: Sequence[EvidenceReport], feed: str, actor: str, report: EvidenceImportReport) -> None:
        """One chunk in one transaction, with its audit entry."""
        by_line = {r.line: r for r in chunk}
        recorded = unchanged = 0
        async with unit_of_work(self._pool) as uow:
            rows = await repo.insert_evidence(
                uow,
                [r.line for r in chunk],
                [lookup_hash(self._lookup_key, r.national_id) for r in chunk],
                [r.source for r in chunk],
                [r.occurred_on for r in chunk],
                [r.reference for r in chunk],
                feed,
                actor,
            )
            for row in rows:
                line, recorded_on = row["line"], row["recorded_on"]
                if not row["known"]:
                    report.errors.append(RowError(line, "national_id", "no person with this national ID"))
                elif row["landed"]:
                    recorded += 1
                elif recorded_on == by_line[line].occurred_on:
                    unchanged += 1
                else:
                    report.errors.append(
                        RowError(line, "occurred_on", f"this reference was recorded before with {recorded_on}")
                    )
            if recorded:
                await audit.record(
                    uow,
                    actor,
                    "evidence.imported",
                    f"feed:{feed}",
                    {"lines": [chunk[0].line, chunk[-1].line], "recorded": recorded, "unchanged": unchanged},
                )
        report.recorded += recorded
        report.unchanged += unchanged

    # -- the silent pass ---------------------------------------------------------------------------
    @property
    def rule(self) -> EvidenceRule:
        return self._rule

    async def _start(self, actor: str, today: date | None) -> uuid.UUID:
        on = today or day_in_china(datetime.now(UTC))
        async with unit_of_work(self._pool) as uow:
            pass_id, created = await repo.start_pass(uow, on, on + self._horizon, self._rule.as_dict(), actor)
            if created:
                details = {"run_on": on.isoformat(), "rule": self._rule.as_dict()}
                await audit.record(uow, actor, "certification.silent_pass_started", f"silent_pass:{pass_id}", details)
        return pass_id

    async def request_pass(self, actor: str) -> SilentPass:
        """Start (or find) the running pass and queue it for a worker; the API's entry point."""
        pass_id = await self._start(actor, None)
        async with unit_of_work(self._pool) as uow:
            await jobs.enqueue(uow, SILENT_JOB, str(pass_id).encode(), f"{SILENT_JOB}:{pass_id}")
        return await self.view(pass_id)

    async def run_pass(
        self, actor: str, on_batch: Callable[[int, int], Awaitable[None]] | None = None, today: date | None = None
    ) -> SilentPass:
        """Start (or resume) the pass and carry it to completion here: the CLI's and the scheduler's."""
        pass_id = await self._start(actor, today)
        await self.process(pass_id, on_batch)
        return await self.view(pass_id)

    async def process(self, pass_id: uuid.UUID, on_batch: Callable[[int, int], Awaitable[None]] | None = None) -> None:
        """Batches until the pass is complete; safe to run in any number of processes at once.

        While a batch is judged and written, the next one is read on a connection of its own: on two
        cores the database reads while Python judges. The read-ahead is used only if the batch it read
        is still the pass's next when the pass is locked again (another executor may have taken it);
        what it read cannot have been changed by this batch's writes (other persons), and a death
        recorded since it was read still wins when the confirmations are written (CONFIRM_SQL)."""
        ahead: ReadAhead | None = None
        try:
            while True:
                async with unit_of_work(self._pool) as uow:
                    run = await repo.lock_pass(uow, pass_id)
                    if run is None:
                        raise NotFound("silent_pass_not_found")
                    if run["state"] == "completed":
                        return
                    rows = await self._next_rows(uow, run, ahead)
                    ahead = self._read_ahead(run, rows)
                    scanned, confirmed = await self._batch_of(uow, run, rows)
                    if scanned == 0:
                        await self._completed(uow, pass_id)
                if on_batch is not None and scanned:
                    await on_batch(scanned, confirmed)
        finally:
            if ahead is not None:
                ahead.rows.cancel()
                with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError, OSError):
                    await ahead.rows

    def _candidates_args(self, run: asyncpg.Record, after: uuid.UUID | None) -> tuple[Any, ...]:
        rule = EvidenceRule.from_dict(run["rule"])
        on: date = run["run_on"]
        return (after, run["due_by"], self._batch, rule.since(on), on, sorted(rule.sources))

    async def _next_rows(self, uow: UnitOfWork, run: asyncpg.Record, ahead: ReadAhead | None) -> list[asyncpg.Record]:
        if ahead is not None and ahead.after == run["resume_after"]:
            return await ahead.rows
        if ahead is not None:
            ahead.rows.cancel()
        return await repo.candidates(uow, *self._candidates_args(run, run["resume_after"]))

    def _read_ahead(self, run: asyncpg.Record, rows: list[asyncpg.Record]) -> ReadAhead | None:
        if len(rows) < self._batch:  # the last batch: nobody after it
            return None
        after: uuid.UUID = rows[-1]["person_id"]
        task = asyncio.ensure_future(repo.candidates(self._pool, *self._candidates_args(run, after)))
        return ReadAhead(after, task)

    async def _batch_of(self, uow: UnitOfWork, run: asyncpg.Record, rows: list[asyncpg.Record]) -> tuple[int, int]:
        """The batch of due persons judged and the confirmed recorded, with the pass's progress: all in
        the caller's transaction, so a crash leaves the batch wholly done or not at all."""
        rule = EvidenceRule.from_dict(run["rule"])
        on: date = run["run_on"]
        chosen: list[tuple[asyncpg.Record, tuple[Evidence, ...]]] = []
        for row in rows:
            found = zip(row["ids"] or (), row["sources"] or (), row["days"] or (), strict=True)
            trail = confirm(rule, (Evidence(i, s, d) for i, s, d in found), on, died=row["died"])
            if trail:
                chosen.append((row, trail))
        confirmed = await repo.confirm_batch(
            uow,
            run["id"],
            on,
            extended_until(on),
            [row["person_id"] for row, _ in chosen],
            [[e.id for e in trail] for _, trail in chosen],
            [row["certified_until"] for row, _ in chosen],
        )
        # The batch's confirmations in one audit entry, each with its trail, so the log alone explains
        # every one: an entry a person would make the pass write as many audit rows as it confirms
        # (half a million in a city), each chained and hashed one after another.
        if confirmed:
            await audit.record(
                uow,
                SILENT_ACTOR,
                "certification.confirmed_by_data",
                f"silent_pass:{run['id']}",
                {
                    "after": str(run["resume_after"]) if run["resume_after"] else None,
                    "confirmations": [
                        {
                            "person": str(row["person_id"]),
                            "previous_until": row["certified_until"].isoformat() if row["certified_until"] else None,
                            "eligible_until": confirmed[row["person_id"]].isoformat(),
                            "evidence": [[str(e.id), e.source, e.occurred_on.isoformat()] for e in trail],
                        }
                        for row, trail in chosen
                        if row["person_id"] in confirmed
                    ],
                },
            )
        last = rows[-1]["person_id"] if rows else None
        await repo.advance_pass(uow, run["id"], last, len(rows), len(confirmed))
        return len(rows), len(confirmed)

    async def _completed(self, uow: UnitOfWork, pass_id: uuid.UUID) -> None:
        done = await repo.pass_view(uow, pass_id)
        assert done is not None
        summary = {"run_on": done["run_on"].isoformat(), "scanned": done["scanned"], "confirmed": done["confirmed"]}
        await audit.record(uow, SILENT_ACTOR, "certification.silent_pass_completed", f"silent_pass:{pass_id}", summary)
        if done["confirmed"]:
            await queue_confirmations_announcement(uow, pass_id)
        log.info("silent pass completed", extra={"pass_id": str(pass_id), **summary})

    async def view(self, pass_id: uuid.UUID) -> SilentPass:
        row = await repo.pass_view(self._pool, pass_id)
        if row is None:
            raise NotFound("silent_pass_not_found")
        return _pass_of(row)

    # -- the trail ---------------------------------------------------------------------------------
    async def own_trail(self, principal: Principal) -> EvidenceTrail:
        """What confirmed the signed-in person, as they see it."""
        return await self._trail(self._pool, principal.linked_person, with_events=False)

    async def trail_for_staff(
        self, principal: Principal, person_id: uuid.UUID, *, with_events: bool = True
    ) -> EvidenceTrail:
        """A person's confirmations, and with `with_events` their recent events, for an operator: the look
        is audited (the evidence says where a person was treated and shopped)."""
        async with unit_of_work(self._pool) as uow:
            trail = await self._trail(uow, person_id, with_events=with_events)
            await audit.record(uow, principal.actor, "person.evidence_viewed", f"person:{person_id}", principal.named)
        return trail

    async def _trail(self, db: Db, person_id: uuid.UUID, *, with_events: bool) -> EvidenceTrail:
        person = await repo.person(db, person_id)
        if person is None:
            raise NotFound("person_not_found")
        confirmations = [
            Confirmation(
                row["pass_id"],
                row["confirmed_on"],
                row["previous_until"],
                row["eligible_until"],
                [_event(e) for e in row["evidence"]],
            )
            for row in await repo.confirmations(db, person_id, TRAIL_LIMIT)
        ]
        events = (
            [
                Event(r["id"], r["source"], r["occurred_on"], r["reference"])
                for r in await repo.recent_evidence(db, person_id, EVENTS_LIMIT)
            ]
            if with_events
            else []
        )
        return EvidenceTrail(
            person_id,
            person["national_id_masked"],
            person["vital_status"],
            person["certified_until"],
            confirmations,
            events,
        )
