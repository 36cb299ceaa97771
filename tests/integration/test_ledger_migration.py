"""Migration 0026 on a ledger written in the old shape (fund and merchant accounts without a person,
balances applied by triggers): every entry lands within its person, against the person's clearing
accounts; the fund's and the merchants' balances are what was carried into them; the cardholder's
statement reads as before; idempotency keys find their person."""

from __future__ import annotations

import hashlib
import json
import uuid

import asyncpg

from infra.config import APP_ROLE
from infra.migrate import migrate, migration_files
from payments.ledger import repository as repo
from tests.conftest import Embedded
from tests.ledger_checks import ledger_violations

DATABASE = "ledger_migration"
MIGRATION = "0026_cluster_keys_ledger.sql"


async def _old_ledger(conn: asyncpg.Connection) -> dict[str, uuid.UUID]:
    """Two persons, two terminals, allocations, charges at both terminals and a refund, through the
    old triggers; the ids by name."""
    ids: dict[str, uuid.UUID] = {}
    for n in (1, 2):
        ids[f"p{n}"] = await conn.fetchval(
            """INSERT INTO persons (national_id_hash, national_id_enc, national_id_masked, name, birth_date, phone, region)
               VALUES ($1, $1, 'x', 'p', '1950-01-01', $2, 'r') RETURNING id""",
            bytes([n]),
            f"1380000000{n}",
        )
        ids[f"card{n}"] = await conn.fetchval(
            "INSERT INTO cards (person_id, card_number, status) VALUES ($1, $2, 'active') RETURNING id",
            ids[f"p{n}"],
            f"00010000000{n}",
        )
        ids[f"t{n}"] = await conn.fetchval(
            "INSERT INTO terminals (merchant, key_hash) VALUES ($1, '\\x00') RETURNING id", f"Pharmacy {n}"
        )
        ids[f"m{n}"] = await conn.fetchval(
            "INSERT INTO ledger_accounts (kind, person_id) VALUES ('medical', $1) RETURNING id", ids[f"p{n}"]
        )
        ids[f"shop{n}"] = await conn.fetchval(
            "INSERT INTO ledger_accounts (kind, terminal_id) VALUES ('merchant', $1) RETURNING id", ids[f"t{n}"]
        )
    fund = await conn.fetchval("SELECT id FROM ledger_accounts WHERE kind = 'fund'")

    async def move(debit: uuid.UUID, credit: uuid.UUID, amount: int, kind: str, reference: uuid.UUID) -> None:
        await conn.execute(
            """INSERT INTO ledger_transfers (debit_account, credit_account, amount_fen, kind, reference)
               VALUES ($1, $2, $3, $4, $5)""",
            debit,
            credit,
            amount,
            kind,
            reference,
        )

    for n, amount in ((1, 10_000), (2, 5_000)):
        allocation = await conn.fetchval(
            """INSERT INTO medical_allocations (person_id, year, amount_fen, imported_by)
               VALUES ($1, 2026, $2, 'system:test') RETURNING id""",
            ids[f"p{n}"],
            amount,
        )
        await move(fund, ids[f"m{n}"], amount, "allocation", allocation)
    for name, person, terminal, amount in (("c1", 1, 1, 3_000), ("c2", 1, 2, 1_000), ("c3", 2, 1, 500)):
        ids[name] = await conn.fetchval(
            """INSERT INTO medical_charges (terminal_id, person_id, card_id, qr_token_id, amount_fen, description)
               VALUES ($1, $2, $3, $4, $5, 'drugs') RETURNING id""",
            ids[f"t{terminal}"],
            ids[f"p{person}"],
            ids[f"card{person}"],
            uuid.uuid4(),
            amount,
        )
        await move(ids[f"m{person}"], ids[f"shop{terminal}"], amount, "charge", ids[name])
    await conn.execute("UPDATE medical_charges SET refunded_fen = 1200 WHERE id = $1", ids["c1"])
    refund = await conn.fetchval(
        "INSERT INTO medical_refunds (charge_id, terminal_id, amount_fen) VALUES ($1, $2, 1200) RETURNING id",
        ids["c1"],
        ids["t1"],
    )
    await move(ids["shop1"], ids["m1"], 1_200, "refund", refund)
    for key, status, response in (
        ("charged", 201, {"charge_id": str(ids["c2"])}),
        ("refunded", 201, {"charge_id": str(ids["c1"]), "refund_id": str(refund)}),
        ("refused", 402, {"code": "insufficient_balance", "params": {}}),
    ):
        await conn.execute(
            """INSERT INTO idempotency_keys (terminal_id, key, request_hash, status_code, response, expires_at)
               VALUES ($1, $2, '\\x00', $3, $4::jsonb, now() + interval '1 day')""",
            ids["t1"],
            key,
            status,
            json.dumps(response),
        )
    return ids


async def test_the_old_ledger_moves_into_persons_and_settled_system_accounts(embedded: Embedded) -> None:
    admin = await asyncpg.connect(embedded.postgres.url("postgres", "postgres"))
    await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    url = embedded.postgres.url("postgres", DATABASE)
    conn = await asyncpg.connect(url)
    try:
        for path in migration_files():
            if path.name >= MIGRATION:
                break
            await conn.execute(path.read_text())
        ids = await _old_ledger(conn)
        # Recorded as applied, so the migrator applies what follows (with its checksums, as it would).
        await conn.execute(
            """CREATE TABLE schema_migrations (name text PRIMARY KEY, checksum text NOT NULL,
                                               applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for path in migration_files():
            if path.name < MIGRATION:
                checksum = hashlib.sha256(path.read_text().encode()).hexdigest()
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", path.name, checksum
                )
        assert MIGRATION in await migrate(url, APP_ROLE)

        assert await ledger_violations(conn) == []
        # Every entry within its person.
        assert await conn.fetchval("SELECT count(DISTINCT person_id) FROM ledger_transfers") == 2
        system = {
            (r["kind"], r["terminal_id"]): r["balance_fen"]
            for r in await conn.fetch("SELECT kind, terminal_id, balance_fen FROM ledger_system_accounts")
        }
        assert system == {("fund", None): -15_000, ("merchant", ids["t1"]): 2_300, ("merchant", ids["t2"]): 1_000}
        clearing = {
            (r["person_id"], r["kind"], r["terminal_id"]): (r["balance_fen"], r["settled_fen"])
            for r in await conn.fetch(
                "SELECT person_id, kind, terminal_id, balance_fen, settled_fen FROM ledger_accounts WHERE kind <> 'medical'"
            )
        }
        assert clearing == {
            (ids["p1"], "fund_clearing", None): (-10_000, -10_000),
            (ids["p2"], "fund_clearing", None): (-5_000, -5_000),
            (ids["p1"], "merchant_clearing", ids["t1"]): (1_800, 1_800),
            (ids["p1"], "merchant_clearing", ids["t2"]): (1_000, 1_000),
            (ids["p2"], "merchant_clearing", ids["t1"]): (500, 500),
        }
        # The statement reads as before: the old order, the running balance.
        entries = await repo.entries(conn, ids["p1"], None, 10)
        assert [(e["kind"], e["amount_fen"], e["balance_after_fen"]) for e in reversed(entries)] == [
            ("allocation", 10_000, 10_000),
            ("charge", -3_000, 7_000),
            ("charge", -1_000, 6_000),
            ("refund", 1_200, 7_200),
        ]
        # New transfers sort after the migrated ones.
        assert await conn.fetchval("SELECT bool_and(id < uuidv7()) FROM ledger_transfers")
        # A refund finds its charge's person; a key its request's person (a refusal's key, naming no
        # charge, is let go).
        assert await conn.fetchval("SELECT person_id FROM medical_refunds") == ids["p1"]
        assert await conn.fetchval("SELECT count(*) FROM medical_charge_persons") == 3
        keys = {r["key"]: r["person_id"] for r in await conn.fetch("SELECT key, person_id FROM idempotency_keys")}
        assert keys == {"charged": ids["p1"], "refunded": ids["p1"]}
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.close()
