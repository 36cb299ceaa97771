"""The medical personal account through the API on the real database: allocations, QR charges,
refunds, the cardholder's statement, and the Idempotency-Key matrix."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.services import Services
from infra.config import APP_ROLE, Settings
from payments.ledger import rules
from tests.factories import (
    concurrent_client,
    mint_qr,
    person_id_of,
    post_charge,
    problem_code,
    run_cli,
    sample_person,
    until_waiting_on_a_lock,
    write_jsonl,
)
from tests.ledger_checks import allocate, ledger_violations, medical_balance

CHARGES = "/v1/terminal/charges"


async def _refund(
    client: Any, terminal: dict[str, str], charge_id: str, amount_fen: int, key: str | None = None
) -> Any:
    headers = {**terminal, "Idempotency-Key": key or uuid.uuid4().hex}
    return await client.post(f"{CHARGES}/{charge_id}/refunds", json={"amount_fen": amount_fen}, headers=headers)


async def _terminal(services: Services, merchant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await services.auth.create_terminal(merchant)}"}


async def _terminal_id(pool: asyncpg.Pool, merchant: str) -> uuid.UUID:
    terminal_id: uuid.UUID = await pool.fetchval("SELECT id FROM terminals WHERE merchant = $1", merchant)
    return terminal_id


@pytest.fixture
async def funded(cardholder: dict[str, Any], services: Services, tmp_path: Path) -> dict[str, Any]:
    """The signed-in cardholder with 100.00 yuan in the medical account."""
    await allocate(services, tmp_path, cardholder["person"], 10_000)
    return cardholder


# -- allocations -----------------------------------------------------------------------------------
async def test_allocation_import_lands_good_rows_reports_bad_ones_and_is_a_no_op_again(
    services: Services,
    importer: Any,
    pool: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice, bob, stranger = sample_person(), sample_person(), sample_person()
    await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [alice.row(), bob.row()]))
    feed = tmp_path / "allocations.csv"
    feed.write_text(
        "national_id,year,amount_fen\n"
        f"{alice.national_id},2026,200000\n"
        f"{stranger.national_id},2026,100\n"  # never imported
        f"{bob.national_id},2026,0\n"
        f"{bob.national_id},2026,150000\n"
        f"{alice.national_id},2025,50000\n"
        f"{alice.national_id[:-1]},2026,100\n",
        encoding="utf-8",
    )

    assert await asyncio.to_thread(run_cli, settings, "import", "allocations", str(feed)) == 3
    out, err = capsys.readouterr()
    assert out.strip() == "allocated 3, unchanged 0, rejected 3 row(s)"
    assert err.splitlines() == [
        "line 3: national_id: no person with this national ID has been imported",
        "line 4: amount_fen: must be a whole number of fen from 1 to 10,000,000",
        "line 7: national_id: must be 18 characters",
    ]
    alice_id = await person_id_of(pool, alice.phone)
    bob_id = await person_id_of(pool, bob.phone)
    assert await medical_balance(pool, alice_id) == 250_000
    assert await medical_balance(pool, bob_id) == 150_000
    # Each allocation came from the person's own fund clearing account (the entry stays on the
    # person's shard); the settlement carries those into the system's fund, once.
    assert await pool.fetchval("SELECT sum(balance_fen) FROM ledger_accounts WHERE kind = 'fund_clearing'") == -400_000
    assert await services.medical.settle() == 2
    assert await services.medical.settle() == 0
    assert await pool.fetchval("SELECT balance_fen FROM ledger_system_accounts WHERE kind = 'fund'") == -400_000
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'medical.allocated'") == 3

    # The same file again changes nothing; a different amount for a year already allocated is refused.
    report = await services.medical.import_allocations(feed, "system:test")
    assert (report.created, report.unchanged) == (0, 3)
    assert [e.line for e in report.errors] == [3, 4, 7]
    changed = write_jsonl(
        tmp_path / "changed.jsonl", [{"national_id": alice.national_id, "year": 2026, "amount_fen": 999}]
    )
    report = await services.medical.import_allocations(changed, "system:test")
    assert report.created == 0
    assert [(e.line, e.field, e.reason) for e in report.errors] == [
        (1, "amount_fen", "2026 was already allocated 200000 fen")
    ]
    assert await medical_balance(pool, alice_id) == 250_000
    assert await pool.fetchval("SELECT count(*) FROM ledger_transfers") == 3
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'medical.allocated'") == 3
    assert await ledger_violations(pool) == []
    assert await services.medical.reconcile() == []


# -- charges -----------------------------------------------------------------------------------------
async def test_charge_gives_a_receipt_without_the_balance_and_shows_in_the_account(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    token = await mint_qr(client, funded["headers"])
    r = await post_charge(client, terminal_headers, token, 2_550)
    assert r.status_code == 201, r.text
    receipt = r.json()
    card = funded["card"]
    assert set(receipt) == {
        "charge_id",
        "amount_fen",
        "description",
        "merchant",
        "masked_card_number",
        "masked_national_id",
        "created_at",
    }
    assert receipt["amount_fen"] == 2_550
    assert receipt["description"] == "门诊西药费"
    assert receipt["merchant"] == "Test Pharmacy"
    assert receipt["masked_card_number"] == "********" + card["card_number"][-4:]
    assert receipt["masked_national_id"] == card["masked_national_id"]
    assert "7450" not in r.text  # never the balance to a terminal

    person_id = await person_id_of(pool, funded["person"].phone)
    event = await pool.fetchrow(
        "SELECT kind, person_id, payload, dedupe_key FROM domain_events WHERE kind LIKE 'medical.%'"
    )
    assert event is not None
    assert event["person_id"] == person_id
    assert event["dedupe_key"] == f"medical.charged:{receipt['charge_id']}"
    assert event["payload"] == {"charge_id": receipt["charge_id"], "amount_fen": 2_550, "merchant": "Test Pharmacy"}

    r = await client.get("/v1/account", headers=funded["headers"])
    assert r.status_code == 200, r.text
    account = r.json()
    assert account["balance_fen"] == 7_450
    assert account["next_cursor"] is None
    charge, allocation = account["entries"]
    assert charge["kind"] == "charge"
    assert charge["amount_fen"] == -2_550
    assert charge["balance_after_fen"] == 7_450
    assert (charge["merchant"], charge["description"], charge["charge_id"]) == (
        "Test Pharmacy",
        "门诊西药费",
        receipt["charge_id"],
    )
    assert allocation["kind"] == "allocation"
    assert (allocation["amount_fen"], allocation["balance_after_fen"], allocation["year"]) == (10_000, 10_000, 2026)
    assert allocation["merchant"] is None

    # The terminal cannot read the account, and the cardholder cannot charge.
    assert (await client.get("/v1/account", headers=terminal_headers)).status_code == 403
    r = await post_charge(client, funded["headers"], token, 1)
    assert r.status_code == 403


async def test_account_pages_newest_first_with_a_cursor(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str]
) -> None:
    charged = []
    for amount in (100, 200, 300):
        r = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), amount)
        assert r.status_code == 201, r.text
        charged.append(r.json()["charge_id"])
    r = await _refund(client, terminal_headers, charged[0], 50)
    assert r.status_code == 201, r.text

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/account", params=params, headers=funded["headers"])
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["balance_fen"] == 10_000 - 600 + 50
        seen.extend(page["entries"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(e["kind"], e["amount_fen"], e["balance_after_fen"]) for e in seen] == [
        ("refund", 50, 9_450),
        ("charge", -300, 9_400),
        ("charge", -200, 9_700),
        ("charge", -100, 9_900),
        ("allocation", 10_000, 10_000),
    ]
    assert seen[0]["charge_id"] == charged[0]
    assert seen[0]["description"] == "门诊西药费"
    r = await client.get("/v1/account", params={"cursor": "not a cursor"}, headers=funded["headers"])
    assert r.status_code == 400
    assert problem_code(r) == "cursor_invalid"


async def test_an_account_never_funded_is_empty(client: Any, cardholder: dict[str, Any]) -> None:
    r = await client.get("/v1/account", headers=cardholder["headers"])
    assert r.status_code == 200, r.text
    assert r.json() == {"balance_fen": 0, "entries": [], "next_cursor": None}


async def test_a_charge_above_the_balance_is_refused_and_leaves_the_code_usable(
    client: Any,
    funded: dict[str, Any],
    terminal_headers: dict[str, str],
    pool: asyncpg.Pool,
    services: Services,
    tmp_path: Path,
) -> None:
    token = await mint_qr(client, funded["headers"])
    r = await post_charge(client, terminal_headers, token, 10_001, key="too-much")
    assert r.status_code == 402
    assert problem_code(r) == "insufficient_balance"
    assert await pool.fetchval("SELECT consumed_at FROM qr_tokens") is None
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 0
    # The refusal is the key's answer, even once the balance would cover the amount.
    await allocate(services, tmp_path, funded["person"], 5_000, year=2027)
    r = await post_charge(client, terminal_headers, token, 10_001, key="too-much")
    assert r.status_code == 402
    assert problem_code(r) == "insufficient_balance"
    # The same code pays with a new key, once.
    r = await post_charge(client, terminal_headers, token, 10_001)
    assert r.status_code == 201, r.text
    r = await post_charge(client, terminal_headers, token, 1)
    assert r.status_code == 409
    assert problem_code(r) == "qr_used"
    assert await medical_balance(pool, await person_id_of(pool, funded["person"].phone)) == 4_999
    assert await ledger_violations(pool) == []


@pytest.mark.parametrize(
    "body",
    [
        {"amount_fen": 0},
        {"amount_fen": -100},
        {"amount_fen": rules.MAX_AMOUNT_FEN + 1},
        {"amount_fen": 2**63},
        {"amount_fen": 1.5},
        {"amount_fen": "1.5"},  # (Litestar decodes leniently: "100" would be exactly 100 fen)
        {"amount_fen": True},
        {"amount_fen": None},
        {"description": ""},
        {"description": "   "},
        {"description": "药" * 201},
        {"qr_token": ""},
        {"tip_fen": 5},
    ],
    ids=lambda body: "-".join(f"{k}={v!r}"[:30] for k, v in body.items()),
)
async def test_bad_charge_bodies_get_400_and_do_not_use_the_key_or_the_code(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, body: dict[str, Any]
) -> None:
    token = await mint_qr(client, funded["headers"])
    good = {"qr_token": token, "amount_fen": 100, "description": "药"}
    headers = {**terminal_headers, "Idempotency-Key": "k1"}
    r = await client.post(CHARGES, json={**good, **body}, headers=headers)
    assert r.status_code == 400, r.text
    assert problem_code(r) == "invalid_body"
    r = await client.post(CHARGES, json=good, headers=headers)
    assert r.status_code == 201, r.text
    assert await ledger_violations(pool) == []


@pytest.mark.parametrize("key", [None, "", "x" * 256])
async def test_a_charge_needs_an_idempotency_key(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, key: str | None
) -> None:
    token = await mint_qr(client, funded["headers"])
    headers = terminal_headers if key is None else {**terminal_headers, "Idempotency-Key": key}
    body = {"qr_token": token, "amount_fen": 100, "description": "药"}
    r = await client.post(CHARGES, json=body, headers={**headers, "Accept-Language": "en"})
    assert r.status_code == 400
    assert problem_code(r) == "idempotency_key_required"
    assert "Idempotency-Key" in r.json()["detail"]
    r = await client.post(f"{CHARGES}/{uuid.uuid4()}/refunds", json={"amount_fen": 1}, headers=headers)
    assert r.status_code == 400
    assert problem_code(r) == "idempotency_key_required"
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    assert await pool.fetchval("SELECT consumed_at FROM qr_tokens") is None


async def test_unusable_codes_are_refused_like_verification_refuses_them(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, settings: Settings
) -> None:
    from cards import qr

    token = await mint_qr(client, funded["headers"])
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in ("not-a-token", forged, ""):
        r = await post_charge(client, terminal_headers, bad or "x", 100)
        assert r.status_code == 400, r.text
        assert problem_code(r) == "qr_invalid"
    # A well-signed token that was never minted.
    claims = qr.decode(settings.qr_signing_key, token)
    assert claims is not None
    unknown = qr.encode(settings.qr_signing_key, qr.QrClaims(uuid.uuid4(), claims.person_id, claims.expires_at))
    r = await post_charge(client, terminal_headers, unknown, 100)
    assert (r.status_code, problem_code(r)) == (400, "qr_invalid")
    # Used by a verification first.
    r = await client.post("/v1/terminal/qr/verify", json={"token": token}, headers=terminal_headers)
    assert r.status_code == 200
    r = await post_charge(client, terminal_headers, token, 100)
    assert (r.status_code, problem_code(r)) == (409, "qr_used")
    # Expired (by the database's clock; the signed expiry is checked the same way as verification does).
    expiring = await mint_qr(client, funded["headers"])
    await pool.execute("UPDATE qr_tokens SET expires_at = now() - interval '1 second' WHERE consumed_at IS NULL")
    r = await post_charge(client, terminal_headers, expiring, 100)
    assert (r.status_code, problem_code(r)) == (410, "qr_expired")
    # A card reported lost: its outstanding codes stop working at once.
    lost = await mint_qr(client, funded["headers"])
    assert (await client.post("/v1/card/loss", headers=funded["headers"])).status_code == 200
    r = await post_charge(client, terminal_headers, lost, 100)
    assert (r.status_code, problem_code(r)) == (409, "qr_card_unusable")
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 0
    assert await medical_balance(pool, await person_id_of(pool, funded["person"].phone)) == 10_000


# -- idempotency -----------------------------------------------------------------------------------
async def test_a_retry_replays_the_first_answer_byte_for_byte(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    token = await mint_qr(client, funded["headers"])
    first = await post_charge(client, terminal_headers, token, 1_234, key="order-1")
    assert first.status_code == 201, first.text
    again = await post_charge(client, terminal_headers, token, 1_234, key="order-1")
    assert again.status_code == 201
    assert again.content == first.content
    # Key order and spacing are not part of the request: the same JSON, written differently, replays.
    body = f'{{"description": "门诊西药费", "amount_fen": 1234,   "qr_token": "{token}"}}'.encode()
    r = await client.post(
        CHARGES,
        content=body,
        headers={**terminal_headers, "Idempotency-Key": "order-1", "Content-Type": "application/json"},
    )
    assert (r.status_code, r.content) == (201, first.content)
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 1
    assert await medical_balance(pool, await person_id_of(pool, funded["person"].phone)) == 10_000 - 1_234

    # The same key for anything else is a mistake the terminal must hear about.
    for other in (
        {"amount_fen": 1_235},
        {"description": "另一笔"},
        {"qr_token": await mint_qr(client, funded["headers"])},
    ):
        body_dict = {"qr_token": token, "amount_fen": 1_234, "description": "门诊西药费", **other}
        r = await client.post(CHARGES, json=body_dict, headers={**terminal_headers, "Idempotency-Key": "order-1"})
        assert r.status_code == 422, r.text
        assert problem_code(r) == "idempotency_key_reused"
    charge_id = first.json()["charge_id"]
    r = await _refund(client, terminal_headers, charge_id, 1, key="order-1")  # another path
    assert (r.status_code, problem_code(r)) == (422, "idempotency_key_reused")
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 1


async def test_keys_belong_to_their_terminal(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], services: Services, pool: asyncpg.Pool
) -> None:
    other = await _terminal(services, "Second Pharmacy")
    r1 = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 100, key="shared-key")
    r2 = await post_charge(client, other, await mint_qr(client, funded["headers"]), 200, key="shared-key")
    assert (r1.status_code, r2.status_code) == (201, 201), (r1.text, r2.text)
    assert r1.json()["charge_id"] != r2.json()["charge_id"]
    assert r2.json()["merchant"] == "Second Pharmacy"
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'shared-key'") == 2
    assert await ledger_violations(pool) == []


async def test_a_request_in_flight_is_refused_and_an_abandoned_one_taken_over(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    token = await mint_qr(client, funded["headers"])
    body = {"qr_token": token, "amount_fen": 500, "description": "药"}
    fingerprint = rules.request_hash("POST", CHARGES, body)
    terminal_id = await _terminal_id(pool, "Test Pharmacy")
    headers = {**terminal_headers, "Idempotency-Key": "k"}
    # A first attempt claimed the key an hour ago and is still working: its transaction holds the row.
    person_id = await person_id_of(pool, funded["person"].phone)
    async with pool.acquire() as first_attempt:
        await first_attempt.execute(
            """INSERT INTO idempotency_keys (person_id, terminal_id, key, request_hash, locked_at, expires_at)
               VALUES ($3, $1, 'k', $2, now() - interval '1 hour', now() + interval '1 day')""",
            terminal_id,
            fingerprint,
            person_id,
        )
        async with first_attempt.transaction():
            await first_attempt.execute(
                "SELECT 1 FROM idempotency_keys WHERE person_id = $1 AND key = 'k' FOR UPDATE", person_id
            )
            r = await client.post(CHARGES, json=body, headers=headers)
            assert (r.status_code, problem_code(r)) == (409, "request_in_flight")  # held: never taken over
            r = await client.post(CHARGES, json={**body, "amount_fen": 501}, headers=headers)
            assert (r.status_code, problem_code(r)) == (422, "idempotency_key_reused")
            assert await pool.fetchval("SELECT consumed_at FROM qr_tokens") is None
    # Its transaction ended without an answer (its process died): the claim, older than the grace and
    # held by nobody, is taken over by a retry of the same request, never by another one.
    r = await client.post(CHARGES, json={**body, "amount_fen": 501}, headers=headers)
    assert (r.status_code, problem_code(r)) == (422, "idempotency_key_reused")
    r = await client.post(CHARGES, json=body, headers=headers)
    assert r.status_code == 201, r.text
    replay = await client.post(CHARGES, json=body, headers=headers)
    assert (replay.status_code, replay.content) == (201, r.content)
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 1


async def test_a_retry_while_the_first_attempt_runs_is_refused_not_run_twice(
    client: Any, settings: Settings, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    token = await mint_qr(client, funded["headers"])
    body = {"qr_token": token, "amount_fen": 500, "description": "药"}
    headers = {**terminal_headers, "Idempotency-Key": "slow"}
    async with concurrent_client(settings) as live, pool.acquire() as blocker:
        async with blocker.transaction():
            # Hold the medical account's lock: the first attempt waits inside its transaction.
            await blocker.execute("SELECT 1 FROM ledger_accounts WHERE kind = 'medical' FOR UPDATE")
            first = asyncio.ensure_future(live.post(CHARGES, json=body, headers=headers))
            await until_waiting_on_a_lock(pool)
            retry = await live.post(CHARGES, json=body, headers=headers)
            assert (retry.status_code, problem_code(retry)) == (409, "request_in_flight")
        answered = await first
    assert answered.status_code == 201, answered.text
    retry = await client.post(CHARGES, json=body, headers=headers)
    assert (retry.status_code, retry.content) == (201, answered.content)
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 1


async def test_a_claim_taken_over_is_no_longer_held_by_its_first_owner(
    funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    """Compare-and-set on the claim's lock time: the first owner, taken for dead, finds the key gone
    when its transaction starts (and answers 409), while the new owner holds it."""
    from infra.db import unit_of_work
    from payments.ledger import repository as repo

    terminal_id = await _terminal_id(pool, "Test Pharmacy")
    person_id = await person_id_of(pool, funded["person"].phone)
    fingerprint = rules.request_hash("POST", CHARGES, {"amount_fen": 1})
    first = await repo.claim_key(pool, person_id, terminal_id, "k", fingerprint, rules.KEY_LIFETIME)
    assert first is not None
    assert await repo.claim_key(pool, person_id, terminal_id, "k", fingerprint, rules.KEY_LIFETIME) is None
    fresh = await repo.take_over_key(
        pool, person_id, terminal_id, "k", fingerprint, rules.KEY_LIFETIME, rules.CLAIM_GRACE
    )
    assert fresh is None  # within the grace: its request is about to hold it
    stale = first - timedelta(seconds=61)
    await pool.execute("UPDATE idempotency_keys SET locked_at = $1", stale)
    takers = await asyncio.gather(
        *(
            repo.take_over_key(pool, person_id, terminal_id, "k", fingerprint, rules.KEY_LIFETIME, rules.CLAIM_GRACE)
            for _ in range(3)
        )
    )
    winners = [t for t in takers if t is not None]
    assert len(winners) == 1
    async with unit_of_work(pool) as uow:
        assert not await repo.hold_key(uow, person_id, terminal_id, "k", stale, rules.HELD_IDLE_LIMIT)
        assert await repo.hold_key(uow, person_id, terminal_id, "k", winners[0], rules.HELD_IDLE_LIMIT)


async def test_an_expired_key_names_a_new_request(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    first = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 100, key="daily-1")
    assert first.status_code == 201
    await pool.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    second = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 300, key="daily-1")
    assert second.status_code == 201, second.text
    assert second.json()["charge_id"] != first.json()["charge_id"]
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 2


async def test_concurrent_duplicates_charge_once(
    client: Any, settings: Settings, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    tokens = [await mint_qr(client, funded["headers"]) for _ in range(5)]
    for n, token in enumerate(tokens):
        async with concurrent_client(settings) as live:
            answers = await asyncio.gather(
                *(post_charge(live, terminal_headers, token, 100, key=f"dup-{n}") for _ in range(4))
            )
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) <= {201, 409}, [a.text for a in answers]
        assert 201 in statuses
        assert all(problem_code(a) == "request_in_flight" for a in answers if a.status_code == 409)
        assert len({a.content for a in answers if a.status_code == 201}) == 1
    assert await pool.fetchval("SELECT count(*) FROM medical_charges") == 5
    assert await medical_balance(pool, await person_id_of(pool, funded["person"].phone)) == 10_000 - 500


# -- refunds ---------------------------------------------------------------------------------------
async def test_refunds_up_to_the_charge_and_not_one_fen_more(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], services: Services, pool: asyncpg.Pool
) -> None:
    r = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 1_000)
    charge_id = r.json()["charge_id"]
    same_merchant = await _terminal(services, "Test Pharmacy")
    merchant_sql = "SELECT balance_fen FROM ledger_system_accounts WHERE kind = 'merchant'"
    assert await services.medical.settle() == 2  # the fund's and the merchant's clearing
    assert await pool.fetchval(merchant_sql) == 1_000
    other_merchant = await _terminal(services, "Other Clinic")

    r = await _refund(client, terminal_headers, charge_id, 400, key="refund-1")
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert (receipt["charge_id"], receipt["amount_fen"], receipt["refundable_fen"]) == (charge_id, 400, 600)
    assert receipt["merchant"] == "Test Pharmacy"
    assert receipt["masked_national_id"] == funded["card"]["masked_national_id"]
    replay = await _refund(client, terminal_headers, charge_id, 400, key="refund-1")
    assert (replay.status_code, replay.content) == (201, r.content)

    r = await _refund(client, same_merchant, charge_id, 601)
    assert r.status_code == 409
    assert problem_code(r) == "refund_exceeds_charge"
    assert "6.00" in r.json()["detail"]
    r = await _refund(client, other_merchant, charge_id, 1)
    assert (r.status_code, problem_code(r)) == (404, "charge_not_found")
    r = await _refund(client, terminal_headers, str(uuid.uuid4()), 1)
    assert (r.status_code, problem_code(r)) == (404, "charge_not_found")

    # Settled in between: the next settlement takes the refund back from the merchant's account.
    assert await services.medical.settle() == 1
    assert await pool.fetchval(merchant_sql) == 600
    r = await _refund(client, same_merchant, charge_id, 600)  # another till of the same pharmacy
    assert r.status_code == 201, r.text
    assert r.json()["refundable_fen"] == 0
    r = await _refund(client, terminal_headers, charge_id, 1, key="one-more")
    assert (r.status_code, problem_code(r)) == (409, "refund_exceeds_charge")
    r = await _refund(client, terminal_headers, charge_id, 1, key="one-more")  # the refusal is replayed
    assert (r.status_code, problem_code(r)) == (409, "refund_exceeds_charge")

    assert await pool.fetchval("SELECT refunded_fen FROM medical_charges") == 1_000
    assert await medical_balance(pool, await person_id_of(pool, funded["person"].phone)) == 10_000
    assert await pool.fetchval("SELECT balance_fen FROM ledger_accounts WHERE kind = 'merchant_clearing'") == 0
    assert await services.medical.settle() == 1
    assert await pool.fetchval(merchant_sql) == 0
    assert await services.medical.reconcile() == []
    events = await pool.fetch("SELECT payload FROM domain_events WHERE kind = 'medical.refunded' ORDER BY id")
    assert [e["payload"]["amount_fen"] for e in events] == [400, 600]
    assert all(e["payload"]["charge_id"] == charge_id for e in events)
    assert await ledger_violations(pool) == []


async def test_concurrent_refunds_never_exceed_the_charge(
    client: Any, settings: Settings, funded: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    r = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 1_000)
    charge_id = r.json()["charge_id"]
    async with concurrent_client(settings) as live:
        answers = await asyncio.gather(*(_refund(live, terminal_headers, charge_id, 300) for _ in range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 201, 409, 409, 409], [a.text for a in answers]
    assert await pool.fetchval("SELECT refunded_fen FROM medical_charges") == 900
    assert await ledger_violations(pool) == []


async def test_entries_and_settlements_are_append_only_for_the_application(
    client: Any, funded: dict[str, Any], terminal_headers: dict[str, str], services: Services, pool: asyncpg.Pool
) -> None:
    """No trigger guards them (Citus allows none on distributed tables): the application's role has no
    right to change or remove an entry or a settlement; a correction is a new entry."""
    r = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 100)
    assert r.status_code == 201, r.text
    assert await services.medical.settle() == 2
    assert await pool.fetchval("SELECT current_user") == APP_ROLE
    for sql in (
        "UPDATE ledger_transfers SET amount_fen = amount_fen + 1",
        "DELETE FROM ledger_transfers",
        "TRUNCATE ledger_transfers CASCADE",
        "UPDATE ledger_settlements SET amount_fen = amount_fen + 1",
        "DELETE FROM ledger_settlements",
        "TRUNCATE ledger_settlements",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(sql)
    assert await ledger_violations(pool) == []
    assert await services.medical.reconcile() == []


async def test_reconciliation_names_a_balance_moved_without_its_entry_and_a_settlement_gone_astray(
    client: Any,
    funded: dict[str, Any],
    terminal_headers: dict[str, str],
    services: Services,
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    r = await post_charge(client, terminal_headers, await mint_qr(client, funded["headers"]), 700)
    assert r.status_code == 201, r.text
    await services.medical.settle()
    assert await services.medical.reconcile() == []
    person_id = await person_id_of(pool, funded["person"].phone)
    # What only the owner could do behind the application's back.
    owner = await asyncpg.connect(settings.migration_database_url)
    try:
        await owner.execute(
            "UPDATE ledger_accounts SET balance_fen = balance_fen + 5 WHERE person_id = $1 AND kind = 'medical'",
            person_id,
        )
        await owner.execute("UPDATE ledger_system_accounts SET balance_fen = balance_fen - 3 WHERE kind = 'merchant'")
    finally:
        await owner.close()
    found = {(m.place, m.off_fen) for m in await services.medical.reconcile()}
    assert found == {("account", 5), ("person", 5), ("shard", 5), ("system", -3), ("total", 2)}


async def test_a_settlement_cut_short_or_run_twice_at_once_carries_each_fen_once(
    client: Any,
    funded: dict[str, Any],
    terminal_headers: dict[str, str],
    services: Services,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from payments.ledger import repository as repo

    tills = [terminal_headers, *[await _terminal(services, f"Clinic {n}") for n in range(3)]]
    for n, till in enumerate(tills):
        r = await post_charge(client, till, await mint_qr(client, funded["headers"]), 100 + n)
        assert r.status_code == 201, r.text
    # Five clearing accounts (the fund's and four terminals'), one per batch; the third batch dies
    # after its carry, before its commit.
    carry, batches = repo.carry, 0

    async def dying(uow: Any, accounts: Any) -> int:
        nonlocal batches
        batches += 1
        carried = await carry(uow, accounts)
        if batches == 3:
            raise ConnectionResetError("the settlement's process died")
        return carried

    monkeypatch.setattr(repo, "carry", dying)
    with pytest.raises(ConnectionResetError):
        await services.medical.settle(batch=1)
    monkeypatch.setattr(repo, "carry", carry)
    assert await pool.fetchval("SELECT count(*) FROM ledger_settlements") == 2
    # Two settlements at once (two workers) and the batch settlement again: the rest, once.
    done = await asyncio.gather(services.medical.settle(batch=2), services.medical.settle(batch=2))
    assert sum(done) == 3
    assert await services.medical.settle() == 0
    merchants = await pool.fetch("SELECT balance_fen FROM ledger_system_accounts WHERE kind = 'merchant'")
    assert sorted(m["balance_fen"] for m in merchants) == [100, 101, 102, 103]
    assert await pool.fetchval("SELECT balance_fen FROM ledger_system_accounts WHERE kind = 'fund'") == -10_000
    assert await pool.fetchval("SELECT count(*) FROM ledger_settlements") == 5
    assert await ledger_violations(pool) == []
    assert await services.medical.reconcile() == []
