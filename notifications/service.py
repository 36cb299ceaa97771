"""Notification use cases: devices, the inbox, dead letters, the reminder scan and run fan-out."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime

import asyncpg

from core.errors import Conflict, NotFound, Unauthorized
from core.pension import pay_date
from infra import audit, metrics
from infra.db import unit_of_work
from notifications import repository as repo
from notifications.rules import LOCAL_TZ, pay_day_release, release_at, reminder_windows, warning_period

log = logging.getLogger(__name__)

REMIND_JOB = "notifications.remind"
ACTIVE_DEVICES = 5  # per person: a new phone's registration retires the oldest beyond this
ANNOUNCE_BATCH = 20_000


class NotificationService:
    def __init__(self, pool: asyncpg.Pool, pay_day: int) -> None:
        self._pool = pool
        self._pay_day = pay_day

    # -- devices -----------------------------------------------------------------------------
    async def register_device(
        self,
        person_id: uuid.UUID,
        session_id: uuid.UUID | None,
        token: str,
        platform: str,
        locale: str,
        app_version: str,
    ) -> asyncpg.Record:
        """Push goes to the phone while the sign-in that registered it lasts."""
        async with unit_of_work(self._pool) as uow:
            # The session is the coordinator's (sign-in), so no foreign key holds a device to it: this
            # check does, and refuses a sign-in that ended meanwhile (its devices were retired with it).
            if session_id is not None and not await repo.session_current(uow, session_id):
                raise Unauthorized("token_invalid")
            device = await repo.register_device(uow, person_id, session_id, token, platform, locale, app_version)
            await repo.deactivate_surplus_devices(uow, person_id, ACTIVE_DEVICES)
        return device

    async def remove_device(self, person_id: uuid.UUID, device_id: uuid.UUID) -> None:
        if not await repo.remove_device(self._pool, person_id, device_id):
            raise NotFound("device_not_found")

    # -- inbox -------------------------------------------------------------------------------
    async def inbox(
        self, person_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> tuple[list[asyncpg.Record], int]:
        rows = await repo.inbox(self._pool, person_id, before, limit)
        return rows, await repo.unread_count(self._pool, person_id)

    async def mark_read(self, person_id: uuid.UUID, notification_id: uuid.UUID) -> asyncpg.Record:
        row = await repo.mark_read(self._pool, person_id, notification_id)
        if row is None:
            raise NotFound("notification_not_found")
        if row["first_read"]:  # read_at was set by this statement (it is the transaction's now())
            metrics.NOTIFICATIONS.labels("inbox", "read").inc()
        return row

    # -- dead letters ------------------------------------------------------------------------
    async def backlog(self) -> list[tuple[str, str, int]]:
        """(channel, state, count) of the deliveries pending and dead now."""
        return [(row["channel"], row["state"], row["n"]) for row in await repo.backlog(self._pool)]

    async def deliveries(self, state: str, after_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
        return await repo.deliveries_in_state(self._pool, state, after_id, limit)

    async def retry(self, actor: str, delivery_id: uuid.UUID) -> asyncpg.Record:
        async with unit_of_work(self._pool) as uow:
            current = await repo.delivery(uow, delivery_id)
            if current is None:
                raise NotFound("delivery_not_found")
            retried = await repo.retry_dead(uow, current["person_id"], delivery_id)
            if retried is None:
                current = await repo.delivery(uow, delivery_id)
                assert current is not None
                raise Conflict("delivery_not_dead", state=current["state"])
            await audit.record(
                uow,
                actor,
                "notification.retried",
                f"delivery:{delivery_id}",
                {"channel": retried["channel"], "last_error": retried["last_error"]},
            )
            row = await repo.delivery(uow, delivery_id)
        assert row is not None
        return row

    # -- scheduled work ----------------------------------------------------------------------
    async def remind(self, today: date | None = None) -> dict[str, int]:
        """The daily scan: certification reminders at 30, 7 and 1 days, and warnings of payments that
        will be withheld. Each notice has a key of person, due date and stage: rerunning writes none."""
        now = datetime.now(UTC)
        today = today or now.astimezone(LOCAL_TZ).date()
        release = release_at(now, urgent=False)
        async with unit_of_work(self._pool) as uow:
            reminders = await repo.remind_due(uow, reminder_windows(today), today, release)
        warnings = 0
        period = warning_period(today, self._pay_day)
        if period is not None:
            async with unit_of_work(self._pool) as uow:
                warnings = await repo.warn_withheld(uow, period, pay_date(period, self._pay_day), release)
        counts = {"reminders": reminders, "warnings": warnings}
        log.info("reminder scan done", extra={"on": today.isoformat(), **counts})
        return counts

    async def announce_confirmations(self, pass_id: uuid.UUID, batch: int = ANNOUNCE_BATCH) -> int:
        """A notice to each person a silent pass confirmed, batch by batch (a restart rewrites none)."""
        release = release_at(datetime.now(UTC), urgent=False)
        written = 0
        after = uuid.UUID(int=0)  # below every id
        while True:
            async with unit_of_work(self._pool) as uow:
                done = await repo.announce_confirmations_batch(uow, pass_id, after, batch, release)
            written += int(done["written"])
            if done["scanned"] < batch:
                break
            after = done["person_id"]
        log.info("confirmation notices written", extra={"pass_id": str(pass_id), "notices": written})
        return written

    async def announce_run(self, run_id: uuid.UUID, batch: int = ANNOUNCE_BATCH) -> int:
        """A notice per payment record of a completed run, batch by batch (a restart rewrites none)."""
        run = await repo.run_to_announce(self._pool, run_id)
        if run is None:
            raise NotFound("disbursement_not_found")
        # In the inbox from the pay date's morning (at once for a pay date past); the push and SMS
        # also wait out the night, as every routine notice does.
        shown = pay_day_release(run["pay_date"], datetime.now(UTC))
        release = release_at(shown, urgent=False)
        written: int = 0
        after: tuple[uuid.UUID, str] | None = None
        while True:
            async with unit_of_work(self._pool) as uow:
                done = await repo.announce_batch(uow, run_id, after, batch, run["pay_date"], release, shown)
            written += int(done["written"])
            if done["scanned"] < batch:
                break
            after = (done["person_id"], done["kind"])
        log.info("payment notices written", extra={"run_id": str(run_id), "notices": written})
        return written
