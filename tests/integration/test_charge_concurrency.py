"""1,000 charges fired at once over 100 QR codes: each code pays exactly once, the rest are refused
with a 4xx, and the ledger holds exactly the winning amounts."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from app.services import Services
from infra.config import Settings
from tests.factories import bearer, concurrent_client, mint_qr, person_id_of
from tests.ledger_checks import allocate, ledger_violations, medical_balance

CODES = 100
ATTEMPTS_PER_CODE = 10
FUNDS = 10_000_000


async def test_1000_concurrent_charges_over_100_codes(
    client: Any, cardholder: dict[str, Any], services: Services, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await allocate(services, tmp_path, cardholder["person"], FUNDS)
    terminals = [bearer(await services.auth.create_terminal(f"Pharmacy {n}")) for n in range(4)]
    tokens = [await mint_qr(client, cardholder["headers"]) for _ in range(CODES)]
    rng = random.Random(4)
    # Every attempt its own key, terminal and amount: only the code decides who wins.
    attempts = [
        (token, rng.randint(1, 5_000), rng.choice(terminals), uuid.uuid4().hex)
        for token in tokens
        for _ in range(ATTEMPTS_PER_CODE)
    ]
    rng.shuffle(attempts)

    # What is tested is who wins a code, not overload: on a machine whose cores are busy, a thousand
    # requests can wait longer than the 3 s a request waits for a connection (then 503, nothing done).
    # The batch settlement runs all the while, carrying the clearing accounts as the charges land.
    racing = asyncio.Event()

    async def settle_meanwhile() -> int:
        rounds = 0
        while not racing.is_set():
            await services.medical.settle()
            rounds += 1
        return rounds

    settling = asyncio.create_task(settle_meanwhile())
    async with concurrent_client(msgspec.structs.replace(settings, db_acquire_timeout_s=60)) as live:
        answers = await asyncio.gather(
            *(
                live.post(
                    "/v1/terminal/charges",
                    json={"qr_token": token, "amount_fen": amount, "description": "药费"},
                    headers={**terminal, "Idempotency-Key": key},
                )
                for token, amount, terminal, key in attempts
            )
        )

    racing.set()
    assert await settling >= 1
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == CODES, sorted(set(statuses))
    refused = [a for a in answers if a.status_code != 201]
    assert all(a.status_code in (409, 410) for a in refused), sorted({a.status_code for a in refused})
    assert {a.json()["code"] for a in refused} <= {"qr_used", "qr_expired"}
    won = [(token, amount) for (token, amount, _, _), a in zip(attempts, answers, strict=True) if a.status_code == 201]
    assert len({token for token, _ in won}) == CODES  # one winner per code
    receipts = [a.json() for a in answers if a.status_code == 201]
    assert sorted(r["amount_fen"] for r in receipts) == sorted(amount for _, amount in won)

    charged = sum(amount for _, amount in won)
    assert await pool.fetchval("SELECT sum(amount_fen) FROM ledger_transfers WHERE kind = 'charge'") == charged
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == CODES
    assert (
        await pool.fetchval("SELECT sum(balance_fen) FROM ledger_accounts WHERE kind = 'merchant_clearing'") == charged
    )
    person_id = await person_id_of(pool, cardholder["person"].phone)
    assert await medical_balance(pool, person_id) == FUNDS - charged
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE locked_at IS NOT NULL") == 0
    assert await ledger_violations(pool) == []
    # What the settlement carried while they raced, and after: each fen once, into the four
    # terminals' merchant accounts.
    await services.medical.settle()
    merchants = "SELECT sum(balance_fen) FROM ledger_system_accounts WHERE kind = 'merchant'"
    assert await pool.fetchval(merchants) == charged
    assert await pool.fetchval("SELECT balance_fen FROM ledger_system_accounts WHERE kind = 'fund'") == -FUNDS
    assert await ledger_violations(pool) == []
    assert await services.medical.reconcile() == []
