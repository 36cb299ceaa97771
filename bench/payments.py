"""`make bench-payments`: pension disbursement and QR charges, each against a baseline in the same run.

Disbursement (1,000,000 entitlements seeded straight into the tables by bench.seed):
  1. the bare statement: one INSERT ... SELECT of every monthly record of a period;
  2. the product: `DisbursementService.run` for the next period (batches, back-pay, progress,
     audit and event), as `socialcard disburse` runs it.
  The bare statement goes first, into the smaller table, so the ratio errs against the product.
QR charges, with the API started as `make run` starts it (granian, 2 workers), 8 terminals, codes
minted beforehand (they live 60 s):
  3. charges over HTTP, 32 in flight (closed loop): charges/s, p50/p99;
  4. charges over HTTP on a fixed 200/s schedule (open loop): the rate achieved, p50/p99;
  5. the baseline: the same charges through the service in this process (terminal key resolved,
     then `MedicalAccountService.charge`; a pool as large as the two API workers' together), 32 in flight.
Only charges answered 201 count; the run fails if any other answer comes back.
Figures go to bench-results/payments.json after each part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from app.services import Services, open_services
from bench.load import Call, closed_loop, mint_codes, open_loop, percentile_ms, running_api, wait_for_api
from bench.qr_roundtrip import seed
from bench.seed import seed_pensioners
from bench.system import embedded_system
from infra import audit
from infra.config import Settings
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

# The same monthly records the product's batch statement makes, for every entitlement at once (its own
# due and withheld rules, so the baseline cannot drift from the product).
BARE_SQL = f"""
    INSERT INTO pension_payments (run_id, person_id, period, kind, status, withheld_reason, amount_fen,
                                  bank_account_enc, bank_account_masked, bank_status)
    SELECT $2, w.person_id, $1, 'monthly', CASE WHEN w.reason IS NULL THEN 'paid' ELSE 'withheld' END, w.reason,
           w.monthly_amount_fen,
           CASE WHEN w.reason IS NULL THEN w.bank_account_enc END,
           CASE WHEN w.reason IS NULL THEN w.bank_account_masked END,
           CASE WHEN w.reason IS NULL THEN 'pending' END
    FROM (SELECT e.person_id, e.monthly_amount_fen, e.bank_account_enc, e.bank_account_masked,
                 {repo.WITHHELD_REASON.format(pay_date="$3")} AS reason
          FROM pension_entitlements e JOIN persons p ON p.id = e.person_id
          WHERE {repo.DUE.format(period="$1")}) w"""


async def _settle(admin: asyncpg.Connection) -> None:
    """The same starting state for each phase: statistics fresh, dirty pages written out."""
    await admin.execute("VACUUM ANALYZE pension_payments")
    await admin.execute("CHECKPOINT")


async def disbursement(settings: Settings, pensioners: int) -> dict[str, Any]:
    admin = await asyncpg.connect(settings.migration_database_url)
    pool = await create_pool(settings.database_url, min_size=1, max_size=2, statement_timeout_s=600)
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
        audit.use_key(settings.audit_chain_key)  # built without app.services, which would set it
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
    """A medical account for every cardholder, with an allocation that no benchmark can spend (from
    the person's fund clearing account, balances applied as the application's transfer does)."""
    await conn.execute(
        """INSERT INTO ledger_accounts (kind, person_id, balance_fen)
           SELECT k.kind, c.person_id, CASE WHEN k.kind = 'medical' THEN 1000000000 ELSE -1000000000 END
           FROM cards c, (VALUES ('medical'), ('fund_clearing')) k (kind)"""
    )
    await conn.execute(
        """INSERT INTO ledger_transfers (person_id, debit_account, credit_account, amount_fen, kind, reference)
           SELECT f.person_id, f.id, m.id, 1000000000, 'allocation', uuidv7()
           FROM ledger_accounts f JOIN ledger_accounts m ON m.person_id = f.person_id AND m.kind = 'medical'
           WHERE f.kind = 'fund_clearing'"""
    )


def _charge_call(key: str, code: str, n: int, phase: str) -> Call:
    body = json.dumps({"qr_token": code, "amount_fen": 1 + n % 5000, "description": "药品"}).encode()
    return Call("/v1/terminal/charges", key, body, f"Idempotency-Key: {phase}-{n}\r\n")


async def _charge_in_process(services: Services, calls: list[Call], concurrency: int) -> dict[str, Any]:
    """The baseline: what the API does for a charge, without HTTP or Litestar."""
    latencies: list[float] = []
    queue = list(reversed(calls))

    async def worker() -> None:
        while queue:
            call = queue.pop()
            body = json.loads(call.body)
            t0 = time.perf_counter()
            terminal = await services.auth.resolve(call.auth)
            assert terminal is not None
            key = call.headers.split(": ", 1)[1].strip()
            request = Idempotency(key, ledger_rules.request_hash("POST", call.path, body))
            await services.medical.charge(terminal, request, body["qr_token"], body["amount_fen"], body["description"])
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "in_flight": concurrency,
        "calls": len(calls),
        "succeeded_per_s": round(len(calls) / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 0.50), 2),
        "p99_ms": round(percentile_ms(latencies, 0.99), 2),
        "failures": 0,  # a refusal raises
    }


async def charges(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    access, _, _, _ = await seed(settings.migration_database_url, settings, args.holders)
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        await _fund_everyone(conn)
    finally:
        await conn.close()
    pool_size = settings.api_workers * settings.db_pool_max
    async with open_services(settings, pool_max=pool_size, background=True) as services:
        keys = [await services.auth.create_terminal(f"bench-{n}") for n in range(8)]
        await wait_for_api(settings.api_port)
        port = settings.api_port

        async def calls(count: int, phase: str) -> list[Call]:
            codes = await mint_codes(port, access, count)
            return [_charge_call(keys[n % len(keys)], code, n, phase) for n, code in enumerate(codes)]

        await closed_loop(port, await calls(500, "warm"), 32, ok=201)
        full = await closed_loop(port, await calls(args.charges, "full"), 32, ok=201)
        fixed = await open_loop(port, await calls(200 * 15, "fixed"), 200, ok=201)
        baseline = await _charge_in_process(services, await calls(args.charges, "base"), 32)
    for part in (full, fixed):
        assert part["failures"] == 0, part["refusals"]
    return {
        "http": full,
        "http_at_200_per_s": fixed,
        "in_process": baseline,
        "http_to_in_process_ratio": round(full["succeeded_per_s"] / baseline["succeeded_per_s"], 3),
    }


def _write(results: dict[str, Any]) -> None:
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    results["config"] = {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    (out / "payments.json").write_text(json.dumps(results, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pensioners", type=int, default=1_000_000)
    parser.add_argument("--charges", type=int, default=8_000, help="charges per closed-loop phase")
    parser.add_argument("--holders", type=int, default=200)
    args = parser.parse_args()

    exit_on_sigterm()
    results: dict[str, Any] = {}
    with embedded_system("socialcard-bench-pay-", BENCH_S3_PORT, API_PORT="8098", LOG_LEVEL="INFO") as (settings, _):
        results["disbursement"] = d = uvloop.run(disbursement(settings, args.pensioners))
        _write(results)
        print(f"disbursement of {d['entitlements']:,} entitlements (batches of {d['batch']:,})")
        print(f"  bare INSERT ... SELECT      {d['bare_insert_select_s']:>8.2f} s")
        print(f"  disbursement run            {d['disbursement_run_s']:>8.2f} s   ({d['records_per_s']:,} records/s)")
        print(f"  run / bare                  {d['run_to_bare_ratio']:>8.2f} x   (target <= 2x, run <= 60 s)")
        with running_api(settings):
            results["charges"] = c = uvloop.run(charges(settings, args))
        _write(results)
    h, f, b = c["http"], c["http_at_200_per_s"], c["in_process"]
    print("QR charges (2 API workers, 8 terminals)              per s    p50 ms   p99 ms")
    print(
        f"  HTTP, 32 in flight                             {h['succeeded_per_s']:>9.1f} {h['p50_ms']:>9.2f} {h['p99_ms']:>8.2f}"
    )
    print(
        f"  HTTP, 200/s schedule (open loop), achieved     {f['succeeded_per_s']:>9.1f} {f['p50_ms']:>9.2f} {f['p99_ms']:>8.2f}"
    )
    print(
        f"  in process, no HTTP, 32 in flight (baseline)   {b['succeeded_per_s']:>9.1f} {b['p50_ms']:>9.2f} {b['p99_ms']:>8.2f}"
    )
    print(f"  HTTP / in process: {c['http_to_in_process_ratio']}   (targets: >= 500 charges/s; p99 <= 100 ms at 200/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
