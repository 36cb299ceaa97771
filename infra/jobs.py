"""Background jobs on pgqueuer: the worker process runs them, the scheduler enqueues the periodic ones.

Both scale by count: pgqueuer hands each job to one worker (SKIP LOCKED), re-hands a dead
worker's job after its heartbeat lapses, and lets one scheduler fire each cron tick.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import cast

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.errors import DuplicateJobError
from pgqueuer.models import Job, Schedule
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.sm import SchedulerManager
from pgqueuer.types import QueueExecutionMode

from infra.config import Settings
from infra.db import UnitOfWork

log = logging.getLogger(__name__)

PURGE_EXPIRED = "housekeeping.purge_expired"

# Sign-in codes, QR tokens, refresh tokens and idempotency keys are worthless a day after they expire.
PURGED_TABLES = ("otp_codes", "qr_tokens", "refresh_tokens", "idempotency_keys")


async def purge_expired(pool: asyncpg.Pool) -> dict[str, int]:
    removed: dict[str, int] = {}
    async with pool.acquire() as conn:
        for table in PURGED_TABLES:
            status = await conn.execute(f"DELETE FROM {table} WHERE expires_at < now() - interval '1 day'")
            removed[table] = int(status.split()[-1])
    return removed


Handler = Callable[[Job], Awaitable[None]]


async def enqueue(
    uow: UnitOfWork, entrypoint: str, payload: bytes, dedupe_key: str, delay: timedelta | None = None
) -> None:
    """Enqueue inside the caller's transaction: the job exists exactly when the change that needs it does."""
    queries = Queries(AsyncpgDriver(cast(asyncpg.Connection, uow.conn)))
    await queries.enqueue(entrypoint, payload, execute_after=delay, dedupe_key=dedupe_key, on_conflict="skip")


def stop_on_signals(*events: asyncio.Event) -> None:
    """Set `events` on SIGTERM or SIGINT."""

    def stop() -> None:
        for event in events:
            event.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def freeze_start_up() -> None:
    """What start-up made (modules, models, pools) lives as long as the process: frozen, it is no longer
    walked by every full collection the work triggers (a dispatcher sending triggers many). Its garbage
    is collected first, so none of that is kept for good."""
    gc.collect()
    gc.freeze()


async def run_worker(
    settings: Settings,
    handlers: Mapping[str, Handler],
    *,
    drain: bool = False,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run jobs until SIGTERM; in-flight jobs finish first (`stopping` tells long ones to end). A
    killed worker's job is picked up again by another once its heartbeat is `job_heartbeat_s` old."""
    conn = await asyncpg.connect(settings.database_url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    for name, handler in handlers.items():
        qm.entrypoint(name, on_failure="hold")(handler)
    if not drain:
        stop_on_signals(qm.shutdown, *filter(None, [stopping]))
    log.info("worker started", extra={"jobs": sorted(handlers)})
    freeze_start_up()
    try:
        await qm.run(
            mode=QueueExecutionMode.drain if drain else QueueExecutionMode.continuous,
            heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_s),
        )
    finally:
        await conn.close()
        log.info("worker stopped")


async def enqueue_once(queries: Queries, entrypoint: str) -> None:
    """Enqueue unless one is already waiting (the dedupe key keeps at most one queued)."""
    try:
        await queries.enqueue(entrypoint, None, dedupe_key=entrypoint)
    except DuplicateJobError:
        log.info("job already queued", extra={"job": entrypoint})


async def run_scheduler(settings: Settings, schedules: Mapping[str, str]) -> None:
    conn = await asyncpg.connect(settings.database_url)
    queries = Queries(AsyncpgDriver(conn))
    sm = SchedulerManager(queries)
    for name, cron in schedules.items():

        async def fire(schedule: Schedule, name: str = name) -> None:
            await enqueue_once(queries, name)

        sm.schedule(name, cron)(fire)
    stop_on_signals(sm.shutdown)
    log.info("scheduler started", extra={"schedules": dict(schedules)})
    try:
        await sm.run()
    finally:
        await conn.close()
        log.info("scheduler stopped")
