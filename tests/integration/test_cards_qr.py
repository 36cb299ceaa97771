"""The e-card and its dynamic QR code on the real database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import string
import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from app.services import Services
from cards import qr
from infra.config import Settings
from tests.factories import (
    bearer,
    concurrent_client,
    record_passed_check,
    recover_card,
    sample_person,
    sign_in,
    write_jsonl,
)

VERIFY = "/v1/terminal/qr/verify"


async def _mint(client: Any, headers: dict[str, str]) -> str:
    r = await client.post("/v1/card/qr", headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert "<svg" in body["svg"]
    token: str = body["token"]
    return token


async def test_card_shows_a_masked_id(client: Any, cardholder: dict[str, Any]) -> None:
    r = await client.get("/v1/card", headers=cardholder["headers"])
    card = r.json()
    nid = cardholder["person"].national_id
    assert card["status"] == "active"
    assert card["masked_national_id"] == nid[:6] + "********" + nid[-4:]
    assert nid not in r.text
    assert len(card["card_number"]) == 12


async def test_activation_needs_the_id_registered_with_this_phone(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    owner, other = sample_person(), sample_person()
    await importer.import_file(write_jsonl(tmp_path / "p.jsonl", [owner.row(), other.row()]))
    tokens = await sign_in(client, pool, other.phone)
    # Another person's ID number from this phone: refused, and nothing changes.
    r = await client.post(
        "/v1/card/activation", json={"national_id": owner.national_id}, headers=bearer(tokens["access_token"])
    )
    assert r.status_code == 403
    assert r.json()["code"] == "activation_mismatch"
    assert await pool.fetchval("SELECT count(*) FROM cards WHERE status = 'active'") == 0
    # An unknown but well-formed ID gets the same answer (no probing who is registered).
    r = await client.post(
        "/v1/card/activation", json={"national_id": sample_person().national_id}, headers=bearer(tokens["access_token"])
    )
    assert r.status_code == 403


async def test_activation_is_idempotent_and_audited(
    client: Any, cardholder: dict[str, Any], pool: asyncpg.Pool
) -> None:
    r = await client.post(
        "/v1/card/activation", json={"national_id": cardholder["person"].national_id}, headers=cardholder["headers"]
    )
    assert r.status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'card.activated'") == 1


async def test_loss_blocks_qr_at_once_and_recovery_restores(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], terminal_headers: dict[str, str]
) -> None:
    headers = cardholder["headers"]
    outstanding = await _mint(client, headers)
    r = await client.post("/v1/card/loss", headers=headers)
    assert r.json()["status"] == "reported_lost"
    # A code minted before the loss report no longer works...
    r = await client.post(VERIFY, json={"token": outstanding}, headers=terminal_headers)
    assert r.status_code == 409
    assert r.json()["code"] == "qr_card_unusable"
    # ...and no new one can be minted.
    r = await client.post("/v1/card/qr", headers=headers)
    assert r.status_code == 409
    assert r.json()["code"] == "card_not_active"
    assert "已挂失" in r.json()["detail"]  # the state by its name, not its code
    r = await client.post("/v1/card/qr", headers={**headers, "Accept-Language": "en"})
    assert r.json()["detail"] == "The card is reported lost and cannot be used."
    assert (await client.post("/v1/card/loss", headers=headers)).status_code == 200  # retry: already done
    # Cancelling the report takes fresh proof (test_card_recovery.py): a face check since it, and a new code.
    await record_passed_check(pool, cardholder["person"].phone)
    r = await recover_card(client, pool, cardholder["person"].phone, headers)
    assert r.json()["status"] == "active"
    assert (await client.post("/v1/card/recovery", json={"code": "000000"}, headers=headers)).status_code == 200
    token = await _mint(client, headers)
    assert (await client.post(VERIFY, json={"token": token}, headers=terminal_headers)).status_code == 200


async def test_verify_returns_the_masked_holder_once(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str]
) -> None:
    token = await _mint(client, cardholder["headers"])
    r = await client.post(VERIFY, json={"token": token}, headers=terminal_headers)
    assert r.status_code == 200, r.text
    holder = r.json()
    assert holder["card_number"] == cardholder["card"]["card_number"]
    assert holder["masked_national_id"] == cardholder["card"]["masked_national_id"]
    r = await client.post(VERIFY, json={"token": token}, headers=terminal_headers)
    assert r.status_code == 409
    assert r.json()["code"] == "qr_used"


async def test_200_concurrent_verifications_of_20_tokens(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, settings: Settings
) -> None:
    tokens = [await _mint(client, cardholder["headers"]) for _ in range(20)]
    attempts = [t for t in tokens for _ in range(10)]
    # The test client runs one request at a time; this one lets the 200 overlap for real.
    async with concurrent_client(settings) as live:
        answers = await asyncio.gather(
            *(live.post(VERIFY, json={"token": t}, headers=terminal_headers) for t in attempts)
        )
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 20
    assert all(400 <= s < 500 for s in statuses if s != 200), sorted(set(statuses))
    winners = {t for t, a in zip(attempts, answers, strict=True) if a.status_code == 200}
    assert winners == set(tokens)  # exactly one winner per token
    assert await pool.fetchval("SELECT count(*) FROM qr_tokens WHERE consumed_at IS NOT NULL") == 20


async def test_expired_token_is_refused(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, settings: Settings
) -> None:
    token = await _mint(client, cardholder["headers"])
    claims = qr.decode(settings.qr_signing_key, token)
    assert claims is not None
    assert 59 <= claims.expires_at - datetime.now(UTC).timestamp() <= 61
    # The signed expiry is refused before any lookup; the database expiry independently.
    await pool.execute("UPDATE qr_tokens SET expires_at = now() - interval '1 second'")
    r = await client.post(VERIFY, json={"token": token}, headers=terminal_headers)
    assert r.status_code == 410
    assert r.json()["code"] == "qr_expired"
    past = qr.encode(settings.qr_signing_key, qr.QrClaims(claims.token_id, claims.person_id, claims.expires_at - 120))
    r = await client.post(VERIFY, json={"token": past}, headers=terminal_headers)
    assert r.status_code == 410


async def test_any_altered_byte_is_refused(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    token = await _mint(client, cardholder["headers"])
    alphabet = string.ascii_letters + string.digits + "-_"
    forged = []
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        replacement = alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
        forged.append(token[:i] + replacement + token[i + 1 :])
    for candidate in forged:
        r = await client.post(VERIFY, json={"token": candidate}, headers=terminal_headers)
        assert r.status_code == 400, (candidate, r.text)
        assert r.json()["code"] == "qr_invalid"
    # None of the forgeries consumed the genuine token.
    assert await pool.fetchval("SELECT count(*) FROM qr_tokens WHERE consumed_at IS NOT NULL") == 0
    assert (await client.post(VERIFY, json={"token": token}, headers=terminal_headers)).status_code == 200


async def test_token_naming_another_person_is_refused(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, settings: Settings
) -> None:
    """Even correctly signed (a leaked key), a token whose person is not the one it was minted for fails."""
    token = await _mint(client, cardholder["headers"])
    claims = qr.decode(settings.qr_signing_key, token)
    assert claims is not None
    other = qr.encode(settings.qr_signing_key, qr.QrClaims(claims.token_id, uuid.uuid4(), claims.expires_at))
    r = await client.post(VERIFY, json={"token": other}, headers=terminal_headers)
    assert r.status_code == 400
    assert await pool.fetchval("SELECT count(*) FROM qr_tokens WHERE consumed_at IS NOT NULL") == 0


async def test_signing_out_the_device_voids_its_codes(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool
) -> None:
    token = await _mint(client, cardholder["headers"])
    assert (await client.post("/v1/auth/logout", headers=cardholder["headers"])).status_code == 204
    for _ in range(2):  # refused each time: the refusal does not use the code up
        r = await client.post(VERIFY, json={"token": token}, headers=terminal_headers)
        assert r.status_code == 409
        assert r.json()["code"] == "qr_card_unusable"
    assert await pool.fetchval("SELECT count(*) FROM qr_tokens WHERE consumed_at IS NOT NULL") == 0


async def test_a_code_minted_before_version_2_is_answered_as_expired(
    client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str], pool: asyncpg.Pool, settings: Settings
) -> None:
    """A version 1 code (its card where the person is now), still alive: the holder is asked to refresh it."""
    token = await _mint(client, cardholder["headers"])
    claims = qr.decode(settings.qr_signing_key, token)
    assert claims is not None
    card_id = await pool.fetchval("SELECT card_id FROM qr_tokens WHERE id = $1", claims.token_id)
    body = struct.pack(">B16s16sI", 1, claims.token_id.bytes, card_id.bytes, claims.expires_at)
    tag = hmac.new(settings.qr_signing_key, b"qr" + body, hashlib.sha256).digest()[:16]
    old = ".".join(base64.urlsafe_b64encode(b).rstrip(b"=").decode() for b in (body, tag))
    r = await client.post(VERIFY, json={"token": old}, headers=terminal_headers)
    assert r.status_code == 410
    assert r.json()["code"] == "qr_expired"
    assert (await client.post(VERIFY, json={"token": token}, headers=terminal_headers)).status_code == 200


async def test_a_card_number_leads_to_its_person(cardholder: dict[str, Any], pool: asyncpg.Pool) -> None:
    """The import writes each card's number into the lookup table, with the card."""
    row = await pool.fetchrow("SELECT person_id, card_number FROM cards")
    assert row["card_number"] == cardholder["card"]["card_number"]
    numbers = await pool.fetch("SELECT card_number, person_id FROM card_numbers")
    assert [(r["card_number"], r["person_id"]) for r in numbers] == [(row["card_number"], row["person_id"])]


async def test_support_token_cannot_mint_payment_codes(
    client: Any, cardholder: dict[str, Any], services: Services
) -> None:
    """A token minted for support staff (`socialcard token`) has no device: it sees the card, never pays."""
    pair = await services.auth.support_token(phone=cardholder["person"].phone)
    assert (await client.get("/v1/card", headers=bearer(pair.access_token))).status_code == 200
    r = await client.post("/v1/card/qr", headers=bearer(pair.access_token))
    assert r.status_code == 403
    assert r.json()["code"] == "device_required"


async def test_cardholders_only_reach_their_own_card(
    client: Any, cardholder: dict[str, Any], pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    other = sample_person()
    await importer.import_file(write_jsonl(tmp_path / "o.jsonl", [other.row()]))
    tokens = await sign_in(client, pool, other.phone)
    r = await client.get("/v1/card", headers=bearer(tokens["access_token"]))
    assert r.status_code == 404  # their own (not yet activated) card, never the other person's
    # A terminal key cannot act as a cardholder, nor a cardholder as a terminal.
    r = await client.post(VERIFY, json={"token": "x"}, headers=cardholder["headers"])
    assert r.status_code == 403
    msgspec.json.decode(r.content)  # problem+json body
