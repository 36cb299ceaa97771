"""`make bench-payments`: pension disbursement and QR charges, each against a baseline in the same run.

Disbursement (1,000,000 entitlements seeded straight into the tables by bench.seed):
  1. the bare statement: one INSERT ... SELECT of every monthly record of a period;
  2. the product: `DisbursementService.run` for the next period (batches, back-pay, progress,
     audit and event), as `socialcard disburse` runs it.
  The bare statement goes first, into the smaller table, so the ratio errs against the product.
QR charges, with the API started as `make run` starts it (granian, 2 workers), 8 terminals:
  3. charges over HTTP at full speed (32 connections; codes minted beforehand): charges/s, p50/p99;
  4. charges over HTTP at a fixed 200/s (open loop): p50/p99;
  5. the baseline: the same charges through `MedicalAccountService.charge` in this process (no HTTP).
Figures go to bench-results/payments.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from app.auth import tokens
from app.auth.principal import TERMINAL, Principal
from app.services import open_services
from bench.qr_roundtrip import HttpConnection, percentile_ms, seed
from bench.seed import seed_pensioners
from bench.system import embedded_system
from infra.config import Settings, settings_env
from infra.crypto import FieldCipher
from infra.db import create_pool
from infra.embedded import exit_on_sigterm
from payments.disbursement import repository as repo
from payments.disbursement.rules import pay_date
from payments.disbursement.service import DisbursementService
from payments.ledger import rules as ledger_rules
from payments.ledger.service import Idempotency

ROOT = Path(__file__).resolve().parents[1]
BENCH_S3_PORT = 38633  # its other ports derive from it (infra.embedded.weed_ports)

# The same monthly records the product's batch statement makes, for every entitlement at once.
BARE_SQL = """
    INSERT INTO pension_payments (run_id, person_id, period, kind, status, withheld_reason, amount_fen,
                                  bank_account_enc, bank_account_masked, bank_status)
    SELECT $2, e.person_id, $1, 'monthly',
           CASE WHEN p.certified_until >= $3 THEN 'paid' ELSE 'withheld' END,
           CASE WHEN p.certified_until IS NULL THEN 'not_certified'
                WHEN p.certified_until < $3 THEN 'certification_expired' END,
           e.monthly_amount_fen,
           CASE WHEN p.certified_until >= $3 THEN e.bank_account_enc END,
           CASE WHEN p.certified_until >= $3 THEN e.bank_account_masked END,
           CASE WHEN p.certified_until >= $3 THEN 'pending' END
    FROM pension_entitlements e JOIN persons p ON p.id = e.person_id
    WHERE e.status = 'active' AND e.start_month <= $1 AND p.vital_status = 'alive'"""


async def _settle(admin: asyncpg.Connection) -> None:
    """The same starting state for each phase: statistics fresh, dirty pages written out."""
    await admin.execute("VACUUM ANALYZE pension_payments")
    await admin.execute("CHECKPOINT")


async def disbursement(settings: Settings, pensioners: int) -> dict[str, Any]:
    admin = await asyncpg.connect(settings.migration_database_url)
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        t0 = time.perf_counter()
        owed = await seed_pensioners(admin, pensioners, FieldCipher(settings.data_encryption_key))
        await admin.execute("VACUUM ANALYZE")
        seeded_s = time.perf_counter() - t0

        bare_period, period = date(2026, 11, 1), date(2026, 12, 1)
        on = pay_date(bare_period, settings.pension_pay_day)
        bare_run, _ = await repo.start_run(pool, bare_period, on, "system:bench")
        await _settle(admin)
        t0 = time.perf_counter()
        status = await admin.execute(BARE_SQL, bare_period, bare_run, on)
        bare_s = time.perf_counter() - t0
        bare_rows = int(status.split()[-1])

        await _settle(admin)
        service = DisbursementService(
            pool, FieldCipher(settings.data_encryption_key), settings.pension_pay_day, settings.disbursement_batch
        )
        t0 = time.perf_counter()
        run = await service.run(period, "system:bench")
        run_s = time.perf_counter() - t0
        records = await admin.fetchval("SELECT count(*) FROM pension_payments WHERE period = $1", period)
        assert records == bare_rows == pensioners, (records, bare_rows)
        assert run["paid_fen"] == owed, (run["paid_fen"], owed)
        return {
            "entitlements": pensioners,
            "seed_s": round(seeded_s, 1),
            "bare_insert_select_s": round(bare_s, 2),
            "disbursement_run_s": round(run_s, 2),
            "run_to_bare_ratio": round(run_s / bare_s, 2),
            "records_per_s": round(pensioners / run_s),
            "batch": settings.disbursement_batch,
            "paid": run["paid_count"],
            "withheld": run["withheld_count"],
            "paid_fen": run["paid_fen"],
        }
    finally:
        await pool.close()
        await admin.close()


async def _fund_everyone(conn: asyncpg.Connection) -> None:
    """A medical account for every seeded person, with an allocation that no benchmark can spend."""
    await conn.execute("INSERT INTO ledger_accounts (kind, person_id) SELECT 'medical', id FROM persons")
    await conn.execute(
        """INSERT INTO ledger_transfers (debit_account, credit_account, amount_fen, kind, reference)
           SELECT (SELECT id FROM ledger_accounts WHERE kind = 'fund'), a.id, 1000000000, 'allocation', uuidv7()
           FROM ledger_accounts a WHERE a.kind = 'medical'"""
    )


async def _terminals(conn: asyncpg.Connection, count: int) -> list[tuple[uuid.UUID, str]]:
    made = []
    for n in range(count):
        terminal_id = uuid.uuid4()
        key, key_hash = tokens.new_terminal_key(terminal_id)
        await conn.execute(
            "INSERT INTO terminals (id, merchant, key_hash) VALUES ($1, $2, $3)", terminal_id, f"bench-{n}", key_hash
        )
        made.append((terminal_id, key))
    return made


async def _mint(port: int, access: list[str], count: int) -> list[str]:
    conns = [await HttpConnection.open(port) for _ in range(16)]
    minted: list[str] = []

    async def loop(n: int) -> None:
        while len(minted) < count:
            status, body = await conns[n].post("/v1/card/qr?svg=false", access[(len(minted) + n) % len(access)], b"")
            assert status == 201, body
            minted.append(json.loads(body)["token"])

    await asyncio.gather(*(loop(n) for n in range(len(conns))))
    for c in conns:
        c.close()
    return minted[:count]


def _charge_body(token: str, n: int) -> bytes:
    return json.dumps({"qr_token": token, "amount_fen": 1 + n % 5000, "description": "药品"}).encode()


async def _charge_over_http(
    port: int, terminals: list[tuple[uuid.UUID, str]], codes: list[str], concurrency: int, phase: str
) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    refusals: dict[str, int] = {}
    queue = list(enumerate(codes))

    async def loop(c: int) -> None:
        nonlocal failures
        conn = await HttpConnection.open(port)
        key = terminals[c % len(terminals)][1]
        try:
            while queue:
                n, token = queue.pop()
                t0 = time.perf_counter()
                status, body = await conn.post(
                    "/v1/terminal/charges", key, _charge_body(token, n), f"Idempotency-Key: {phase}-{n}\r\n"
                )
                latencies.append(time.perf_counter() - t0)
                if status != 201:
                    failures += 1
                    code = f"{status} {json.loads(body).get('code')}"
                    refusals[code] = refusals.get(code, 0) + 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "charges": len(codes),
        "charges_per_s": round(len(codes) / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 0.50), 2),
        "p99_ms": round(percentile_ms(latencies, 0.99), 2),
        "failures": failures,
        "refusals": refusals,
    }


async def _charge_at_fixed_rate(
    port: int, terminals: list[tuple[uuid.UUID, str]], codes: list[str], rate: int
) -> dict[str, Any]:
    """Open loop: each charge starts on its schedule whatever the server does (no coordinated omission)."""
    conns = [await HttpConnection.open(port) for _ in range(64)]
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies: list[float] = []
    failures = 0

    async def one(n: int, token: str, scheduled: float) -> None:
        nonlocal failures
        conn = await free.get()
        try:
            key = terminals[n % len(terminals)][1]
            status, _ = await conn.post(
                "/v1/terminal/charges", key, _charge_body(token, n), f"Idempotency-Key: fixed-{n}\r\n"
            )
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        failures += status != 201

    start = time.perf_counter() + 0.05
    tasks = []
    for n, token in enumerate(codes):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n, token, scheduled)))
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return {
        "rate_per_s": rate,
        "charges": len(codes),
        "p50_ms": round(percentile_ms(latencies, 0.50), 2),
        "p99_ms": round(percentile_ms(latencies, 0.99), 2),
        "failures": failures,
    }


async def _charge_in_process(
    settings: Settings, terminals: list[tuple[uuid.UUID, str]], codes: list[str], concurrency: int
) -> dict[str, Any]:
    """The baseline: the service's charge (the same SQL and idempotency) without HTTP or Litestar."""
    async with open_services(settings, pool_max=concurrency) as services:
        principals = [
            Principal(TERMINAL, terminal_id, merchant=f"bench-{n}") for n, (terminal_id, _) in enumerate(terminals)
        ]
        queue = list(enumerate(codes))
        latencies: list[float] = []

        async def loop(c: int) -> None:
            terminal = principals[c % len(principals)]
            while queue:
                n, token = queue.pop()
                body = json.loads(_charge_body(token, n))
                request = Idempotency(f"base-{n}", ledger_rules.request_hash("POST", "/v1/terminal/charges", body))
                t0 = time.perf_counter()
                await services.medical.charge(terminal, request, token, body["amount_fen"], body["description"])
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "charges": len(codes),
        "charges_per_s": round(len(codes) / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 0.50), 2),
        "p99_ms": round(percentile_ms(latencies, 0.99), 2),
    }


def charges(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    api = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        env={**os.environ, **settings_env(settings)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def run() -> dict[str, Any]:
        access, _, _, _ = await seed(settings.migration_database_url, settings, args.holders)
        conn = await asyncpg.connect(settings.migration_database_url)
        try:
            await _fund_everyone(conn)
            terminals = await _terminals(conn, 8)
        finally:
            await conn.close()
        for _ in range(300):
            try:
                (await HttpConnection.open(settings.api_port)).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        port = settings.api_port
        await _charge_over_http(port, terminals, await _mint(port, access, 500), 32, "warm")  # warm-up
        full = await _charge_over_http(port, terminals, await _mint(port, access, args.charges), 32, "full")
        fixed = await _charge_at_fixed_rate(port, terminals, await _mint(port, access, 200 * 15), 200)
        bare = await _charge_in_process(settings, terminals, await _mint(port, access, args.charges), 32)
        return {"http": full, "http_at_200_per_s": fixed, "in_process": bare}

    try:
        return uvloop.run(run())
    finally:
        api.terminate()
        api.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pensioners", type=int, default=1_000_000)
    parser.add_argument("--charges", type=int, default=8_000, help="charges per full-speed phase")
    parser.add_argument("--holders", type=int, default=200)
    parser.add_argument("--skip-disbursement", action="store_true")
    args = parser.parse_args()

    exit_on_sigterm()
    with embedded_system("socialcard-bench-pay-", BENCH_S3_PORT, API_PORT="8098", LOG_LEVEL="INFO") as (
        settings,
        _,
    ):
        results: dict[str, Any] = {"charges": charges(settings, args)}
        if not args.skip_disbursement:
            results["disbursement"] = uvloop.run(disbursement(settings, args.pensioners))
    results["config"] = {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "payments.json").write_text(json.dumps(results, indent=2))
    c = results["charges"]
    h, f, b = c["http"], c["http_at_200_per_s"], c["in_process"]
    results["charges"]["http_to_in_process_ratio"] = round(h["charges_per_s"] / b["charges_per_s"], 3)
    print("QR charges (2 API workers, 8 terminals)       per s    p50 ms   p99 ms")
    print(
        f"  HTTP, 32 connections                    {h['charges_per_s']:>9.1f} {h['p50_ms']:>9.2f} {h['p99_ms']:>8.2f}"
    )
    print(f"  HTTP at a fixed 200/s (open loop)       {200:>9.1f} {f['p50_ms']:>9.2f} {f['p99_ms']:>8.2f}")
    print(
        f"  in process, no HTTP (baseline)          {b['charges_per_s']:>9.1f} {b['p50_ms']:>9.2f} {b['p99_ms']:>8.2f}"
    )
    print(
        f"  HTTP / in process: {results['charges']['http_to_in_process_ratio']}; failures {h['failures']}, {f['failures']}"
    )
    print("  targets: >= 500 charges/s; p99 <= 100 ms at 200/s")
    (out / "payments.json").write_text(json.dumps(results, indent=2))
    if "disbursement" not in results:
        return 0
    d = results["disbursement"]
    print(f"disbursement of {d['entitlements']:,} entitlements (batches of {d['batch']:,})")
    print(f"  bare INSERT ... SELECT      {d['bare_insert_select_s']:>8.2f} s")
    print(f"  disbursement run            {d['disbursement_run_s']:>8.2f} s   ({d['records_per_s']:,} records/s)")
    print(f"  run / bare                  {d['run_to_bare_ratio']:>8.2f} x   (target <= 2x, run <= 60 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
