"""Dispatchers: claim due deliveries of one channel, send them, record what happened.

At least once: a claim is a lease, so a dispatcher killed between sending and recording leaves
its deliveries due again when the lease ends, and the next dispatcher sends them again (the
notice, and so the inbox entry, is one row whatever happens to its deliveries). Any number of
dispatchers may run; a claim takes only deliveries still due when it writes them, so each goes to
one of them (notifications.repository.CLAIM_SQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import asyncpg

from infra import metrics
from infra.config import Settings
from infra.db import unit_of_work
from notifications import repository as repo
from notifications.push import BATCH, Push, PushMessage, PushOutcome
from notifications.repository import Outcome
from notifications.rules import release_at, retry_delay
from notifications.sms import SmsNotSent, SmsProvider
from notifications.templates import Rendered, render, sms_text

T = TypeVar("T")
log = logging.getLogger(__name__)

Channel = Literal["push", "sms"]
CHANNELS: tuple[Channel, ...] = ("push", "sms")
DISPATCH_JOBS: dict[Channel, str] = {"push": "notifications.dispatch_push", "sms": "notifications.dispatch_sms"}
SMS_BATCH = 100


def notice_push(token: str, notification_id: uuid.UUID | str, kind: str, text: Rendered, urgent: bool) -> PushMessage:
    """A notice as a push: the app opens the notice from `data`, and its id collapses repeats on the device."""
    notice = str(notification_id)
    return PushMessage(
        token=token,
        title=text.title,
        body=text.body,
        data={"notification_id": notice, "kind": kind},
        collapse_key=notice,
        urgent=urgent,
    )


class Dispatcher:
    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, push: Push, sms: SmsProvider, *, push_batch: int = BATCH
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._push = push
        self._sms = sms
        self._push_batch = push_batch  # 1 only for the benchmark's one-message-per-request baseline

    async def run(
        self, channel: Channel, *, window_s: float | None = None, poll_s: float = 1.0, stop: asyncio.Event | None = None
    ) -> int:
        """Dispatch until nothing is due (no window), or poll for `window_s` seconds (the scheduled job);
        `stop` ends the loop early. Returns the number of deliveries handled."""
        deadline = time.monotonic() + (window_s or 0.0)
        stop = stop or asyncio.Event()
        handled = 0
        while not stop.is_set():
            claimed = await self.dispatch(channel)
            handled += claimed
            if claimed:
                continue
            if window_s is None or time.monotonic() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
        return handled

    async def dispatch(self, channel: Channel) -> int:
        """One batch: claimed, sent, recorded. Returns how many were claimed."""
        s = self._settings
        rows = await repo.claim(
            self._pool, channel, self._push_batch if channel == "push" else SMS_BATCH, s.notify_lease_s
        )
        if rows:
            await (self._send_push(rows) if channel == "push" else self._send_sms(rows))
        return len(rows)

    def _after_failure(self, row: asyncpg.Record, error: str, retry_after: float | None, now: datetime) -> Outcome:
        """Again later, backing off, or dead once the attempts are used up."""
        attempts: int = row["attempts"]
        if attempts >= self._settings.notify_max_attempts:
            return Outcome(row["person_id"], row["id"], attempts, "dead", error)
        later = now + retry_delay(attempts, self._settings.notify_retry_s, retry_after)
        return Outcome(row["person_id"], row["id"], attempts, "pending", error, release_at(later, urgent=row["urgent"]))

    def _exhausted(self, row: asyncpg.Record) -> Outcome | None:
        """A delivery claimed again after its last attempt: its dispatchers died before recording it."""
        if row["attempts"] > self._settings.notify_max_attempts:
            return Outcome(row["person_id"], row["id"], row["attempts"], "dead", "no outcome recorded")
        return None

    @staticmethod
    def _written(row: asyncpg.Record, write: Callable[[str, str, Mapping[str, Any]], T], locale: str) -> T | Outcome:
        """`row`'s text in `locale`, or its dead letter when the template cannot be filled (naming what is missing)."""
        try:
            return write(row["kind"], locale, row["params"])
        except KeyError as missing:
            return Outcome(row["person_id"], row["id"], row["attempts"], "dead", f"template: {missing}")

    async def _send_push(self, rows: Sequence[asyncpg.Record]) -> None:
        now = datetime.now(UTC)
        outcomes: list[Outcome] = []
        gone: list[tuple[asyncpg.Record, str]] = []
        sending: list[tuple[asyncpg.Record, PushMessage]] = []
        for row in rows:
            exhausted = self._exhausted(row)
            if exhausted is not None:
                outcomes.append(exhausted)
            elif row["device_gone"]:
                outcomes.append(Outcome(row["person_id"], row["id"], row["attempts"], "cancelled", "device_removed"))
                gone.append((row, "device_removed"))
            else:
                text = self._written(row, render, row["device_locale"])
                if isinstance(text, Outcome):
                    outcomes.append(text)
                    continue
                sending.append(
                    (row, notice_push(row["push_token"], row["notification_id"], row["kind"], text, row["urgent"]))
                )
        results: list[PushOutcome] = await self._push.send([m for _, m in sending]) if sending else []
        for (row, _), result in zip(sending, results, strict=True):
            if result.state == "delivered":
                outcomes.append(Outcome(row["person_id"], row["id"], row["attempts"], "sent"))
            elif result.state == "token_gone":
                outcomes.append(Outcome(row["person_id"], row["id"], row["attempts"], "cancelled", result.error))
                gone.append((row, result.error or "token_gone"))
            elif result.state == "retry":
                outcomes.append(self._after_failure(row, result.error or "retry", result.retry_after, now))
            else:
                outcomes.append(Outcome(row["person_id"], row["id"], row["attempts"], "dead", result.error))
        async with unit_of_work(self._pool) as uow:
            await repo.record(
                uow,
                outcomes,
                [(row["person_id"], row["device_id"], error) for row, error in gone if not row["device_gone"]],
                [(row["person_id"], row["notification_id"]) for row, _ in gone],
                now,
            )
        count_outcomes("push", outcomes)
        if gone:
            log.info("push tokens deactivated", extra={"devices": len(gone)})

    async def _send_sms(self, rows: Sequence[asyncpg.Record]) -> None:
        now = datetime.now(UTC)
        outcomes: list[Outcome] = []
        async with unit_of_work(self._pool) as uow:
            for row in rows:
                exhausted = self._exhausted(row)
                if exhausted is not None:
                    outcomes.append(exhausted)
                    continue
                sms = self._written(row, sms_text, row["person_locale"])
                if isinstance(sms, Outcome):
                    outcomes.append(sms)
                    continue
                try:
                    await self._sms.send(uow, row["phone"], sms)
                except SmsNotSent as refused:
                    outcomes.append(self._after_failure(row, str(refused), refused.retry_after, now))
                    continue
                outcomes.append(Outcome(row["person_id"], row["id"], row["attempts"], "sent"))
            await repo.record(uow, outcomes, [], [], now)
        count_outcomes("sms", outcomes)


# A delivery's state after an attempt, as counted: a failure to be tried again is pending in the table.
COUNTED_STATES = {"sent": "sent", "pending": "retry", "dead": "dead", "cancelled": "cancelled"}


def count_outcomes(channel: Channel, outcomes: Sequence[Outcome]) -> None:
    """Count what the dispatcher recorded (after its transaction committed)."""
    for state, n in Counter(COUNTED_STATES.get(o.state, "other") for o in outcomes).items():
        metrics.NOTIFICATIONS.labels(channel, state).inc(n)
