"""`make bench-silent-pass`: the silent pass over a city of 1,000,000 pensioners, against a bare SQL
join of the same rule, in the same run and process.

Seeded straight into the tables (persons and pensions by bench.seed; the feeds by COPY): every
pensioner due in the cycle (certified until within the next month, or never), with realistic feeds
of several sources: bank activity for most, pharmacy purchases, hospital visits with their insurance
settlements, a few civil-affairs and police records, QR charges at pharmacy terminals for some; a
share with no evidence at all; 1% dead (death records, some with later events still in the feeds).
  1. the bare join: one read-only statement counting the persons the rule confirms;
  2. the product: `EvidenceService.run_pass`, as `socialcard certify silent-pass` runs it (batches
     committed with the pass's progress, eligibility extended, the confirmations and their trail
     recorded, one audit entry per batch listing each confirmation with its trail).
The two must agree on who is confirmed. Figures go to bench-results/silent_pass.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from bench.seed import seed_pensioners
from bench.system import embedded_system
from certification.evidence.rules import EvidenceRule
from certification.evidence.service import EvidenceService
from certification.rules import day_in_china
from infra import audit
from infra.config import Settings
from infra.crypto import FieldCipher
from infra.db import create_pool
from infra.embedded import exit_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
BENCH_S3_PORT = 38733  # its other ports derive from it (infra.embedded.weed_ports)

# The rule, in one statement over every person: who is due (alive, no death record standing, an active
# pension, certified until `$1` or never) and has at least `$5` distinct events (source and day) from
# at least `$6` sources the rule counts, within its window.
BARE_SQL = """
    WITH due AS (
        SELECT p.id FROM persons p JOIN pension_entitlements e ON e.person_id = p.id
        WHERE p.vital_status = 'alive' AND e.status = 'active' AND (p.certified_until IS NULL OR p.certified_until <= $1)
          AND NOT EXISTS (SELECT 1 FROM death_records d WHERE d.person_id = p.id AND d.reversed_at IS NULL)
    ), events AS (
        SELECT DISTINCT v.person_id, v.source, v.occurred_on FROM life_evidence_all v
        WHERE v.occurred_on BETWEEN $2 AND $3 AND v.source = ANY ($4::text[])
    )
    SELECT count(*) FROM (
        SELECT x.person_id FROM events x JOIN due ON due.id = x.person_id
        GROUP BY x.person_id HAVING count(*) >= $5 AND count(DISTINCT x.source) >= $6
    ) confirmed"""

# Per person: (source, share of persons with it, events a year for those), loosely after what
# Chinese cities report matching: bank activity is nearly universal, medical records common.
FEEDS = (
    ("bank_activity", 0.85, 3),
    ("pharmacy_purchase", 0.55, 2),
    ("hospital_visit", 0.30, 1),
    ("civil_affairs", 0.05, 1),
    ("police", 0.03, 1),
)
FEED_DAYS = 240  # the feeds imported cover the last eight months
NO_EVIDENCE = 0.08
QR_SHARE = 0.15
DEAD_SHARE = 0.01


async def seed(conn: asyncpg.Connection, settings: Settings, pensioners: int, today: date) -> dict[str, Any]:
    await seed_pensioners(conn, pensioners, FieldCipher(settings.data_encryption_key))
    # The cycle: everyone due within the pass's horizon, one in ten never certified.
    await conn.execute(
        """UPDATE persons SET certified_until = CASE WHEN certified_until IS NOT NULL
                                                     THEN $1::date + (abs(hashtext(id::text)) % 30) END""",
        today,
    )
    ids: list[uuid.UUID] = [r["id"] for r in await conn.fetch("SELECT id FROM persons ORDER BY id")]
    rng = random.Random(19)  # noqa: S311 (synthetic data, the same every run)
    evidence: list[tuple[uuid.UUID, str, date, str, str, str]] = []
    charged: list[uuid.UUID] = []
    dead: list[uuid.UUID] = []
    for n, person in enumerate(ids):
        if rng.random() < DEAD_SHARE:
            dead.append(person)  # their feeds go on below: a death record must still win
        elif rng.random() < NO_EVIDENCE:
            continue
        for source, share, per_year in FEEDS:
            if rng.random() < share:
                for k in range(rng.randint(1, per_year * 2)):
                    day = today - timedelta(days=rng.randint(0, FEED_DAYS))
                    evidence.append((person, source, day, f"{source[:3]}-{n}-{k}", "bench", "system:bench"))
                    if source == "hospital_visit":  # the visit's settlement, the same day
                        evidence.append((person, "insurance_settlement", day, f"set-{n}-{k}", "bench", "system:bench"))
        if rng.random() < QR_SHARE:
            charged.append(person)
    await conn.copy_records_to_table(
        "life_evidence",
        records=evidence,
        columns=["person_id", "source", "occurred_on", "reference", "feed", "imported_by"],
    )
    # QR charges need a card and a terminal; the charges themselves come by COPY too.
    terminal = await conn.fetchval(
        "INSERT INTO terminals (merchant, key_hash) VALUES ('Bench Pharmacy', '\\x00') RETURNING id"
    )
    await conn.execute(
        """WITH card AS (
               INSERT INTO cards (person_id, card_number, status)
               SELECT p, 'B' || lpad(n::text, 9, '0'), 'active' FROM unnest($1::uuid[]) WITH ORDINALITY AS c (p, n)
               RETURNING person_id, card_number
           )
           INSERT INTO card_numbers (card_number, person_id) SELECT card_number, person_id FROM card""",
        charged,
    )
    cards = {r["person_id"]: r["id"] for r in await conn.fetch("SELECT id, person_id FROM cards")}
    now = datetime.now(UTC)
    charges = [
        (
            terminal,
            p,
            cards[p],
            uuid.uuid4(),
            1_000 + rng.randint(0, 20_000),
            "药品",
            now - timedelta(days=rng.randint(0, 200)),
        )
        for p in charged
    ]
    await conn.copy_records_to_table(
        "medical_charges",
        records=charges,
        columns=["terminal_id", "person_id", "card_id", "qr_token_id", "amount_fen", "description", "created_at"],
    )
    await conn.execute(
        """INSERT INTO death_records (person_id, date_of_death, source) SELECT p, $2, 'bench' FROM unnest($1::uuid[]) p""",
        dead,
        today - timedelta(days=60),
    )
    await conn.execute(
        "UPDATE persons SET vital_status = 'deceased', date_of_death = $2 WHERE id = ANY ($1::uuid[])",
        dead,
        today - timedelta(days=60),
    )
    await conn.execute("VACUUM ANALYZE")
    await conn.execute("CHECKPOINT")
    return {"pensioners": pensioners, "evidence_rows": len(evidence), "qr_charges": len(charges), "dead": len(dead)}


async def measure(settings: Settings, pensioners: int) -> dict[str, Any]:
    admin = await asyncpg.connect(settings.migration_database_url)
    pool = await create_pool(settings.database_url, min_size=1, max_size=2, statement_timeout_s=600)
    try:
        today = day_in_china(datetime.now(UTC))
        t0 = time.perf_counter()
        seeded = await seed(admin, settings, pensioners, today)
        seeded["seed_s"] = round(time.perf_counter() - t0, 1)

        audit.use_key(settings.audit_chain_key)  # built without app.services, which would set it
        service = EvidenceService(pool, settings)
        rule: EvidenceRule = service.rule
        due_by = today + timedelta(days=settings.silent_pass_horizon_days)
        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            bare_count = await conn.fetchval(
                BARE_SQL, due_by, rule.since(today), today, sorted(rule.sources), rule.min_events, rule.min_sources
            )
            bare_s = time.perf_counter() - t0
        await admin.execute("CHECKPOINT")

        t0 = time.perf_counter()
        done = await service.run_pass("system:bench", today=today)
        pass_s = time.perf_counter() - t0
        assert done.confirmed == bare_count, (done.confirmed, bare_count)
        audited = await admin.fetchval(
            """SELECT count(*) FROM audit_log, jsonb_array_elements(details -> 'confirmations')
               WHERE action = 'certification.confirmed_by_data'"""
        )
        assert audited == done.confirmed, (audited, done.confirmed)
        confirmed_dead = await admin.fetchval(
            """SELECT count(*) FROM life_confirmations c JOIN death_records d ON d.person_id = c.person_id"""
        )
        assert confirmed_dead == 0
        return {
            **seeded,
            "rule": rule.as_dict(),
            "due": done.scanned,
            "confirmed": done.confirmed,
            "confirmed_share": round(done.confirmed / max(done.scanned, 1), 3),
            "bare_join_s": round(bare_s, 2),
            "silent_pass_s": round(pass_s, 2),
            "pass_to_bare_ratio": round(pass_s / bare_s, 2),
            "persons_per_s": round(done.scanned / pass_s),
            "batch": settings.silent_pass_batch,
        }
    finally:
        await pool.close()
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pensioners", type=int, default=1_000_000)
    args = parser.parse_args()
    exit_on_sigterm()
    with embedded_system("socialcard-bench-silent-", BENCH_S3_PORT, LOG_LEVEL="WARNING") as (settings, _):
        r: dict[str, Any] = uvloop.run(measure(settings, args.pensioners))
    r["config"] = {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "silent_pass.json").write_text(json.dumps(r, indent=2))
    print(
        f"silent pass over {r['pensioners']:,} pensioners ({r['evidence_rows']:,} feed rows, {r['qr_charges']:,} QR charges, {r['dead']:,} dead; seeded in {r['seed_s']} s)"
    )
    print(f"  due {r['due']:,}, confirmed {r['confirmed']:,} ({r['confirmed_share']:.1%})")
    print(f"  bare SQL join of the rule    {r['bare_join_s']:>8.2f} s")
    print(
        f"  silent pass                  {r['silent_pass_s']:>8.2f} s   ({r['persons_per_s']:,} persons/s, batches of {r['batch']:,})"
    )
    print(f"  pass / bare                  {r['pass_to_bare_ratio']:>8.2f} x   (target: pass <= 60 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
