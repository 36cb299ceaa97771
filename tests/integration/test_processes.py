"""The real processes: the API under granian with two workers, and the pgqueuer worker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from app.jobs import run_worker
from infra.config import Settings
from infra.jobs import PURGE_EXPIRED, enqueue_once
from tests.factories import sample_person, serving


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    with serving(settings, workers=2) as base:
        yield base


async def test_otp_limit_holds_across_two_api_workers(api: str, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)  # new connections spread over workers
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=30) as client:
        answers = await asyncio.gather(*(client.post("/v1/auth/otp", json={"phone": phone}) for _ in range(40)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) == 5, statuses
    assert statuses.count(429) == 35, statuses
    assert await pool.fetchval("SELECT count(*) FROM dev_sms_messages WHERE phone = $1", phone) == 5
    api_processes = await pool.fetchval(
        """SELECT count(DISTINCT application_name) FROM pg_stat_activity
           WHERE datname = current_database() AND application_name LIKE 'socialcard:%'
             AND application_name <> 'socialcard:' || $1""",
        str(os.getpid()),
    )
    assert api_processes == 2  # two granian workers, each with its own pool, shared one limit


async def test_worker_runs_the_purge_job(settings: Settings, pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO otp_codes (phone, code_hash, expires_at) VALUES ('13900000001', '\\x00', now() - interval '2 days'),"
        " ('13900000002', '\\x00', now() + interval '5 minutes')"
    )
    conn = await asyncpg.connect(settings.database_url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await enqueue_once(queries, PURGE_EXPIRED)
        await enqueue_once(queries, PURGE_EXPIRED)  # deduplicated: one waiting job at most
        assert await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", PURGE_EXPIRED) == 1
    finally:
        await conn.close()
    await asyncio.wait_for(run_worker(settings, drain=True), timeout=60)
    assert await pool.fetchval("SELECT array_agg(phone) FROM otp_codes") == ["13900000002"]
