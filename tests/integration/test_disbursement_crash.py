"""A 10,000-pension run killed with SIGKILL ten times at random points, then run again; and two
runs of one period at once. Real `socialcard disburse` processes on the real database."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from datetime import date
from pathlib import Path

import asyncpg

from app.services import Services
from bench.seed import seed_pensioners
from infra.config import Settings, settings_env
from infra.crypto import FieldCipher

ROOT = Path(__file__).resolve().parents[2]
PENSIONERS = 10_000


async def disburse(env: dict[str, str], period: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "disburse",
        "--period",
        period,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def progress(pool: asyncpg.Pool, period: date) -> int:
    done: int | None = await pool.fetchval("SELECT processed FROM disbursement_runs WHERE period = $1", period)
    return done or 0


async def making_progress(pool: asyncpg.Pool, period: date, target: int, child: asyncio.subprocess.Process) -> None:
    for _ in range(6000):
        if child.returncode is not None or await progress(pool, period) >= target:
            return
        await asyncio.sleep(0.005)


async def outcome(pool: asyncpg.Pool, period: date) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        "SELECT person_id, kind, status, withheld_reason, amount_fen FROM pension_payments WHERE period = $1",
        period,
    )
    return sorted(tuple(r) for r in rows)


async def test_a_run_killed_ten_times_then_finished_has_every_record_once(
    settings: Settings, services: Services, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        owed = await seed_pensioners(conn, PENSIONERS, FieldCipher(settings.data_encryption_key))
    env = {**os.environ, **settings_env(settings), "DISBURSEMENT_BATCH": "250", "LOG_LEVEL": "WARNING"}
    rng = random.Random(20261222)
    dec = date(2026, 12, 1)
    killed_at: list[int] = []
    for _ in range(10):
        # Kill once this process has done a random 1-3 more batches: mid-run, however loaded the machine.
        target = await progress(pool, dec) + 250 * rng.randint(1, 3)
        child = await disburse(env, "2026-12")
        await making_progress(pool, dec, target, child)
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
        killed_at.append(await progress(pool, dec))
        if killed_at[-1] == PENSIONERS:
            break
    assert sum(0 < done < PENSIONERS for done in killed_at) >= 5, killed_at  # most kills landed mid-run

    finisher = await disburse(env, "2026-12")
    assert await finisher.wait() == 0
    totals = await pool.fetchrow(
        """SELECT count(*) AS records, count(DISTINCT person_id) AS people,
                  count(*) FILTER (WHERE status = 'withheld') AS withheld,
                  coalesce(sum(amount_fen) FILTER (WHERE status = 'paid'), 0)::bigint AS paid_fen
           FROM pension_payments WHERE period = $1""",
        dec,
    )
    assert totals is not None
    assert (totals["records"], totals["people"], totals["withheld"]) == (PENSIONERS, PENSIONERS, PENSIONERS // 10)
    assert totals["paid_fen"] == owed  # exact to the fen
    run = await pool.fetchrow("SELECT state, processed, entitlements FROM disbursement_runs WHERE period = $1", dec)
    assert run is not None
    assert (run["state"], run["processed"], run["entitlements"]) == ("completed", PENSIONERS, PENSIONERS)

    # Two runs of the next period at once: one run, the same records as a run alone would make.
    jan = date(2027, 1, 1)
    pair = [await disburse(env, "2027-01") for _ in range(2)]
    assert [await child.wait() for child in pair] == [0, 0]
    assert await pool.fetchval("SELECT count(*) FROM disbursement_runs WHERE period = $1", jan) == 1
    expected = [
        (person, kind, status, reason, amount) for person, kind, status, reason, amount in await outcome(pool, dec)
    ]
    assert await outcome(pool, jan) == expected
