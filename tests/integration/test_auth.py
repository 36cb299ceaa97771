"""Sign-in on the real database: codes, limits, token rotation and revocation, operators, terminals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pyotp
import pytest

from app.services import Services
from infra.config import Settings
from tests.factories import bearer, last_code, sample_person, sign_in

VERIFY = "/v1/auth/otp/verify"


def _verify_body(phone: str, code: str) -> dict[str, str]:
    return {"phone": phone, "code": code, "device_id": "device-0001", "platform": "ios"}


async def test_code_sign_in_gives_working_tokens(client: Any, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    tokens = await sign_in(client, pool, phone)
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["expires_in"] == 900
    # Signed in but no card activated yet: a clear 404, not a 401.
    r = await client.get("/v1/card", headers=bearer(tokens["access_token"]))
    assert r.status_code == 404
    assert r.json()["code"] == "card_not_activated"


async def test_code_is_single_use(client: Any, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    await client.post("/v1/auth/otp", json={"phone": phone})
    code = await last_code(pool, phone)
    assert (await client.post(VERIFY, json=_verify_body(phone, code))).status_code == 200
    r = await client.post(VERIFY, json=_verify_body(phone, code))
    assert r.status_code == 400
    assert r.json()["code"] == "otp_expired"


async def test_five_wrong_tries_burn_the_code(client: Any, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    await client.post("/v1/auth/otp", json={"phone": phone})
    code = await last_code(pool, phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = [await client.post(VERIFY, json=_verify_body(phone, wrong)) for _ in range(5)]
    assert [a.json()["code"] for a in answers] == ["otp_invalid"] * 4 + ["otp_locked"]
    assert "4" in answers[0].json()["detail"]  # tries left are shown
    r = await client.post(VERIFY, json=_verify_body(phone, code))
    assert r.status_code == 400
    assert r.json()["code"] == "otp_locked"


async def test_code_expires_after_five_minutes(client: Any, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    await client.post("/v1/auth/otp", json={"phone": phone})
    code = await last_code(pool, phone)
    await pool.execute(
        "UPDATE otp_codes SET created_at = created_at - interval '6 minutes', "
        "expires_at = expires_at - interval '6 minutes' WHERE phone = $1",
        phone,
    )
    r = await client.post(VERIFY, json=_verify_body(phone, code))
    assert r.json()["code"] == "otp_expired"


async def test_at_most_five_codes_per_phone_per_hour(client: Any, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    statuses = [(await client.post("/v1/auth/otp", json={"phone": phone})).status_code for _ in range(6)]
    assert statuses == [202] * 5 + [429]
    r = await client.post("/v1/auth/otp", json={"phone": phone}, headers={"Accept-Language": "en"})
    assert r.json()["code"] == "otp_rate_limited"
    assert 0 < int(r.headers["retry-after"]) <= 3600
    assert "minutes" in r.json()["detail"]
    # Another phone is not affected.
    assert (await client.post("/v1/auth/otp", json={"phone": sample_person().phone})).status_code == 202


async def test_refresh_rotates_and_reuse_revokes_the_family(client: Any, pool: asyncpg.Pool) -> None:
    tokens = await sign_in(client, pool, sample_person().phone)
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    # The first refresh token comes back: a copy exists somewhere. The whole family ends.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    r = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert r.status_code == 401
    for access in (tokens["access_token"], rotated["access_token"]):
        r = await client.get("/v1/card", headers=bearer(access))
        assert r.status_code == 401
        assert r.json()["code"] == "token_invalid"


async def test_logout_stops_the_access_token_at_once(client: Any, pool: asyncpg.Pool) -> None:
    tokens = await sign_in(client, pool, sample_person().phone)
    headers = bearer(tokens["access_token"])
    assert (await client.get("/v1/card", headers=headers)).status_code == 404
    assert (await client.post("/v1/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/v1/card", headers=headers)).status_code == 401
    r = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_expired_access_token_is_refused(client: Any, pool: asyncpg.Pool, settings: Settings) -> None:
    from auth.tokens import issue_access_token, parse_access_token

    tokens = await sign_in(client, pool, sample_person().phone)
    claims = parse_access_token(settings.token_signing_key, tokens["access_token"], datetime.now(UTC))
    assert claims is not None
    stale = issue_access_token(
        settings.token_signing_key, claims.session_id, "account", datetime.now(UTC) - timedelta(seconds=1)
    )
    assert (await client.get("/v1/card", headers=bearer(stale))).status_code == 401


@pytest.fixture
async def operator(services: Services) -> dict[str, str]:
    secret = await services.auth.create_operator("alice", "Alice", "operator", "correct horse battery staple")
    return {"username": "alice", "password": "correct horse battery staple", "secret": secret}


async def test_operator_signs_in_with_password_and_totp(client: Any, operator: dict[str, str]) -> None:
    body = {"username": "alice", "password": operator["password"], "totp": pyotp.TOTP(operator["secret"]).now()}
    r = await client.post("/v1/auth/operator", json=body)
    assert r.status_code == 200, r.text
    # An operator is not a cardholder: the card routes refuse them.
    r = await client.get("/v1/card", headers=bearer(r.json()["access_token"]))
    assert r.status_code == 403


async def test_operator_wrong_totp_and_lockout(client: Any, operator: dict[str, str], pool: asyncpg.Pool) -> None:
    good = pyotp.TOTP(operator["secret"]).now()
    bad = f"{(int(good) + 500_000) % 1_000_000:06d}"
    for _ in range(5):
        r = await client.post(
            "/v1/auth/operator", json={"username": "alice", "password": operator["password"], "totp": bad}
        )
        assert r.status_code == 401
    r = await client.post(
        "/v1/auth/operator", json={"username": "alice", "password": operator["password"], "totp": good}
    )
    assert r.status_code == 429
    assert r.json()["code"] == "operator_locked"
    failures = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.operator_sign_in_failed'")
    assert failures == 5


async def test_unknown_operator_gets_the_same_answer(client: Any) -> None:
    r = await client.post("/v1/auth/operator", json={"username": "nobody", "password": "x" * 12, "totp": "123456"})
    assert r.status_code == 401
    assert r.json()["code"] == "operator_credentials"


async def test_terminal_key_is_stored_hashed_and_revocable(
    client: Any, pool: asyncpg.Pool, terminal_headers: dict[str, str]
) -> None:
    key = terminal_headers["Authorization"].split()[1]
    stored = await pool.fetchval("SELECT key_hash FROM terminals")
    assert key.encode() not in stored
    assert key.split(".")[1].encode() not in stored
    r = await client.post("/v1/terminal/qr/verify", json={"token": "x"}, headers=terminal_headers)
    assert r.status_code == 400  # authenticated; the token itself is refused
    await pool.execute("UPDATE terminals SET revoked_at = now()")
    r = await client.post("/v1/terminal/qr/verify", json={"token": "x"}, headers=terminal_headers)
    assert r.status_code == 401


async def test_sign_in_is_audited_with_a_masked_phone(client: Any, pool: asyncpg.Pool) -> None:
    phone = sample_person().phone
    await sign_in(client, pool, phone)
    details = await pool.fetchval("SELECT details FROM audit_log WHERE action = 'auth.sign_in'")
    assert details["phone"] == phone[:3] + "****" + phone[-4:]
