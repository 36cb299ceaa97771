"""`make bench-payments`: a disbursement run over 1,000,000 entitlements against a bare
`INSERT ... SELECT` producing the same rows, on the embedded PostgreSQL, in one process.

Seeds the pensioners straight into the tables (bench.seed), then times:
  1. the bare statement: one INSERT ... SELECT of every monthly record of a period;
  2. the product: `DisbursementService.run` for the next period (batches, back-pay, progress,
     audit and event), as `socialcard disburse` runs it.
The bare statement goes first, into the smaller table, so the ratio errs against the product.
Figures go to bench-results/payments.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from bench.seed import seed_pensioners
from bench.system import embedded_system
from infra.config import Settings
from infra.crypto import FieldCipher
from infra.db import create_pool
from infra.embedded import exit_on_sigterm
from payments.disbursement import repository as repo
from payments.disbursement.rules import pay_date
from payments.disbursement.service import DisbursementService

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pensioners", type=int, default=1_000_000)
    args = parser.parse_args()

    exit_on_sigterm()
    with embedded_system("socialcard-bench-pay-", BENCH_S3_PORT, API_PORT="8098", LOG_LEVEL="WARNING") as (
        settings,
        _,
    ):
        results: dict[str, Any] = {"disbursement": uvloop.run(disbursement(settings, args.pensioners))}
    results["config"] = {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "payments.json").write_text(json.dumps(results, indent=2))
    d = results["disbursement"]
    print(f"disbursement of {d['entitlements']:,} entitlements (batches of {d['batch']:,})")
    print(f"  bare INSERT ... SELECT      {d['bare_insert_select_s']:>8.2f} s")
    print(f"  disbursement run            {d['disbursement_run_s']:>8.2f} s   ({d['records_per_s']:,} records/s)")
    print(f"  run / bare                  {d['run_to_bare_ratio']:>8.2f} x   (target <= 2x, run <= 60 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
