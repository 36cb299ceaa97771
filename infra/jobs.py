"""Background jobs on pgqueuer: the worker process runs them, the scheduler enqueues the periodic ones.

Both scale by count: pgqueuer hands each job to one worker (SKIP LOCKED), re-hands a dead
worker's job after its heartbeat lapses, and lets one scheduler fire each cron tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.errors import DuplicateJobError, RetryRequested
from pgqueuer.executors import EntrypointExecutor
from pgqueuer.models import Context, Job, Schedule
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.sm import SchedulerManager
from pgqueuer.types import QueueExecutionMode

from infra import faults, metrics
from infra.config import Settings
from infra.db import UnitOfWork

log = logging.getLogger(__name__)

PURGE_EXPIRED = "housekeeping.purge_expired"
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0

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

# A job meeting a passing failure (infra.faults) is tried again after 2, 4, 8 ... s, at most 5 min
# apart, for about an hour; then it is held as failed, for an administrator to look at.
RETRY_FIRST = timedelta(seconds=2)
RETRY_MAX = timedelta(minutes=5)
RETRY_ATTEMPTS = 16


def retry_delay(attempts: int) -> timedelta | None:
    """How long before the next try of a job that failed for a passing reason `attempts` times before
    this one; None once it has had its tries."""
    if attempts >= RETRY_ATTEMPTS:
        return None
    return min(RETRY_FIRST * (1 << attempts), RETRY_MAX)


def next_try(job: Job, exc: BaseException) -> timedelta | None:
    """When a job that failed with `exc` is tried again; None when it is not (held as failed)."""
    return retry_delay(job.attempts) if faults.transient(exc) else None


@dataclasses.dataclass
class RetryingExecutor(EntrypointExecutor):
    """Runs a job; one that meets a passing failure goes back to the queue to wait and try again, instead
    of being held for good (a statement timeout, a database restart, S3 away)."""

    async def execute(self, job: Job, context: Context) -> None:
        metrics.JOB_WAIT.labels(job.entrypoint).observe(waited_s(job.created, job.execute_after, datetime.now(UTC)))
        started = time.perf_counter()
        result = "failed"  # unless it ends otherwise (an exception, a cancellation)
        try:
            await super().execute(job, context)
            result = "ok"
        except Exception as exc:
            if (delay := next_try(job, exc)) is None:
                log.error("job failed", extra={"job": job.entrypoint, "attempts": job.attempts + 1}, exc_info=exc)
                raise
            result = "retry"
            log.warning(
                "job met a passing failure; tried again later",
                extra={
                    "job": job.entrypoint,
                    "attempt": job.attempts + 1,
                    "retry_in_s": delay.total_seconds(),
                    "error": repr(exc),
                },
            )
            raise RetryRequested(delay=delay, reason=repr(exc)) from exc
        finally:
            metrics.JOB_DURATION.labels(job.entrypoint, result).observe(time.perf_counter() - started)


def waited_s(created: datetime, execute_after: datetime, started: datetime) -> float:
    """How long a job waited for a worker: from when it could first run (queued, or its retry's delay
    over) to `started`; never below 0 (the database's clock and the worker's may differ a little)."""
    return max(0.0, (started - max(created, execute_after)).total_seconds())


async def queue_depth(pool: asyncpg.Pool) -> list[tuple[str, str, int]]:
    """(job, status, count) of the jobs in the queue now: queued (waiting, or held back for a retry),
    picked (running), failed (held for an administrator)."""
    counts: dict[tuple[str, str], int] = {}
    for row in await Queries(AsyncpgPoolDriver(pool)).queue_size():  # one row per priority too
        key = (str(row.entrypoint), str(row.status))
        counts[key] = counts.get(key, 0) + row.count
    return [(job, status, n) for (job, status), n in sorted(counts.items())]


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


async def _until_lost(conn: asyncpg.Connection, work: Coroutine[Any, Any, None]) -> None:
    """Run `work`, ended with InterfaceError as soon as `conn` is lost: the scheduler sleeps until its
    next tick and would otherwise find out only then, and a job's heartbeats on a dead connection
    would fail unseen."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise asyncpg.InterfaceError("the queue connection was lost")
    task.result()


async def _on_queue_connection(
    settings: Settings, stop: asyncio.Event, session: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]]
) -> None:
    """Run `session` on a connection of its own until `stop` is set. A connection that breaks (the database
    restarted, failed over, or cut it) is opened again with backoff, however long the database is away:
    the worker and the scheduler outlive any outage instead of exiting with it."""
    delay = RECONNECT_FIRST_S
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(
                settings.database_url,
                timeout=RECONNECT_MAX_S,
                # Named in pg_stat_activity: which process holds which queue connection.
                server_settings={"application_name": f"socialcard-queue:{os.getpid()}"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            # Refused, no socket yet, "the database system is starting up": the same answer, wait.
            log.warning("queue database unreachable", extra={"retry_in_s": delay, "error": repr(exc)})
        else:
            started = asyncio.get_running_loop().time()
            try:
                await _until_lost(conn, session(conn))
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
                log.warning("queue connection lost", extra={"retry_in_s": delay, "error": repr(exc)})
            finally:
                conn.terminate()  # a broken connection cannot be closed politely
            if asyncio.get_running_loop().time() - started > RECONNECT_MAX_S:
                delay = RECONNECT_FIRST_S  # it worked for a while: the next outage starts the backoff over
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, RECONNECT_MAX_S)


async def run_worker(
    settings: Settings,
    handlers: Mapping[str, Handler],
    *,
    drain: bool = False,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run jobs until SIGTERM; in-flight jobs finish first (`stopping` tells long ones to end). A
    killed worker's job is picked up again by another once its heartbeat is `job_heartbeat_s` old.
    A job that fails for a passing reason is tried again later (RetryingExecutor)."""
    stop = stopping or asyncio.Event()
    if not drain:
        stop_on_signals(stop)

    async def session(conn: asyncpg.Connection) -> None:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        if not drain:
            qm.shutdown = stop  # SIGTERM ends it, whichever connection it is on
        for name, handler in handlers.items():
            qm.entrypoint(name, on_failure="hold", executor_factory=RetryingExecutor)(handler)
        await qm.run(
            mode=QueueExecutionMode.drain if drain else QueueExecutionMode.continuous,
            heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_s),
        )
        if drain:
            stop.set()  # the queue is empty: done

    log.info("worker started", extra={"jobs": sorted(handlers)})
    freeze_start_up()
    await _on_queue_connection(settings, stop, session)
    log.info("worker stopped")


async def enqueue_once(queries: Queries, entrypoint: str) -> None:
    """Enqueue unless one is already waiting (the dedupe key keeps at most one queued)."""
    try:
        await queries.enqueue(entrypoint, None, dedupe_key=entrypoint)
    except DuplicateJobError:
        log.info("job already queued", extra={"job": entrypoint})


async def run_scheduler(settings: Settings, schedules: Mapping[str, str]) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)

    async def session(conn: asyncpg.Connection) -> None:
        queries = Queries(AsyncpgDriver(conn))
        sm = SchedulerManager(queries)
        sm.shutdown = stop
        for name, cron in schedules.items():

            async def fire(schedule: Schedule, name: str = name) -> None:
                await enqueue_once(queries, name)

            sm.schedule(name, cron)(fire)
        await sm.run()

    log.info("scheduler started", extra={"schedules": dict(schedules)})
    await _on_queue_connection(settings, stop, session)
    log.info("scheduler stopped")
