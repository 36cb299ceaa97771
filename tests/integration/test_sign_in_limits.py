"""Sign-in limits held in PostgreSQL (issue 16, items 4 and 5): SMS codes per client and overall, and
operator sign-ins: a TOTP code used once, unknown usernames treated like real ones, guessing per client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pyotp
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.services import Services
from infra.config import Settings
from tests.factories import form_token, post_sign_in, problem_code, sample_person, serving, staff_member

OTP = "/v1/auth/otp"
OPERATOR = "/v1/auth/operator"
PASSWORD = "correct horse battery"  # tests.factories.staff_member's


def _from(address: str) -> dict[str, str]:
    return {"X-Real-IP": address}


@pytest.fixture
async def behind_proxy(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The API behind a proxy that names each caller's address in X-Real-IP (CLIENT_IP_HEADER)."""
    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, client_ip_header="x-real-ip"))) as client:
        yield client


# -- SMS codes -----------------------------------------------------------------------------------------
async def test_one_client_gets_ten_codes_an_hour_whatever_the_phones(
    behind_proxy: AsyncTestClient[Any], pool: asyncpg.Pool
) -> None:
    phones = [sample_person().phone for _ in range(11)]
    statuses = [
        (await behind_proxy.post(OTP, json={"phone": p}, headers=_from("203.0.113.7"))).status_code for p in phones
    ]
    assert statuses == [202] * 10 + [429]
    r = await behind_proxy.post(
        OTP, json={"phone": phones[-1]}, headers={**_from("203.0.113.7"), "Accept-Language": "en"}
    )
    assert problem_code(r) == "otp_client_rate_limited"
    assert 0 < int(r.headers["retry-after"]) <= 3600
    assert "minutes" in r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM dev_sms_messages WHERE phone = $1", phones[-1]) == 0
    # Another client is not held back by this one.
    assert (await behind_proxy.post(OTP, json={"phone": phones[-1]}, headers=_from("198.51.100.9"))).status_code == 202


async def test_without_a_trusted_proxy_header_a_claimed_address_changes_nothing(client: Any) -> None:
    statuses = []
    for n in range(11):
        spoofed = {"X-Forwarded-For": f"203.0.113.{n}", "X-Real-IP": f"198.51.100.{n}"}
        statuses.append((await client.post(OTP, json={"phone": sample_person().phone}, headers=spoofed)).status_code)
    assert statuses == [202] * 10 + [429]


async def test_the_hourly_total_holds_for_every_client_together(settings: Settings, pool: asyncpg.Pool) -> None:
    small = msgspec.structs.replace(settings, client_ip_header="x-real-ip", otp_total_per_hour=6)
    async with AsyncTestClient(create_app(small)) as client:

        async def ask(phone: str, n: int) -> Any:
            return await client.post(
                OTP, json={"phone": phone}, headers={**_from(f"203.0.113.{n}"), "Accept-Language": "en"}
            )

        phone = sample_person().phone
        statuses = [(await ask(phone, n)).status_code for n in range(6)]
        assert statuses == [202] * 5 + [429]  # the phone's own limit: nothing sent, nothing taken from the total
        assert (await ask(sample_person().phone, 6)).status_code == 202
        r = await ask(sample_person().phone, 7)
    assert problem_code(r) == "otp_unavailable"
    assert 0 < int(r.headers["retry-after"]) <= 3600
    assert "minutes" in r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM dev_sms_messages") == 6


async def test_code_budgets_hold_across_two_api_workers(settings: Settings, pool: asyncpg.Pool) -> None:
    budgets = msgspec.structs.replace(settings, client_ip_header="x-real-ip", otp_total_per_hour=15)
    limits = httpx.Limits(max_connections=30, max_keepalive_connections=0)  # new connections spread over workers
    with serving(budgets, workers=2) as api:
        async with httpx.AsyncClient(base_url=api, limits=limits, timeout=30) as client:

            async def ask(address: str) -> int:
                r = await client.post(OTP, json={"phone": sample_person().phone}, headers=_from(address))
                return r.status_code

            one_client = await asyncio.gather(*(ask("203.0.113.7") for _ in range(14)))
            assert sorted(one_client) == [202] * 10 + [429] * 4
            others = await asyncio.gather(*(ask(f"198.51.100.{n % 2}") for n in range(12)))
            assert sorted(others) == [202] * 5 + [429] * 7  # 15 an hour in all
    assert await pool.fetchval("SELECT count(*) FROM dev_sms_messages") == 15


# -- operators -----------------------------------------------------------------------------------------
async def test_a_totp_code_signs_in_once_by_the_api_or_the_console(client: Any, services: Services) -> None:
    totp = pyotp.TOTP(await staff_member(services, "olga", "Olga Operator"))
    code = totp.now()
    body = {"username": "olga", "password": PASSWORD, "totp": code}
    assert (await client.post(OPERATOR, json=body)).status_code == 200
    r = await client.post(OPERATOR, json=body)
    assert (r.status_code, problem_code(r)) == (401, "operator_credentials")
    page = await client.get("/console/sign-in")
    assert (await post_sign_in(client, form_token(page.text), "olga", code)).status_code == 401
    # The next time step's code (within the clock drift allowed) is a new one.
    later = totp.at(datetime.now(UTC) + timedelta(seconds=30))
    assert (await client.post(OPERATOR, json={**body, "totp": later})).status_code == 200


async def test_unknown_usernames_lock_exactly_like_real_ones(
    client: Any, services: Services, pool: asyncpg.Pool
) -> None:
    secret = await staff_member(services, "pavel", "Pavel Operator")
    good = pyotp.TOTP(secret).now()
    bad = f"{(int(good) + 500_000) % 1_000_000:06d}"

    async def answers(username: str) -> list[tuple[int, str, str | None]]:
        seen = []
        for totp in [bad] * 5 + [good]:
            r = await client.post(OPERATOR, json={"username": username, "password": PASSWORD, "totp": totp})
            seen.append((r.status_code, problem_code(r), r.headers.get("retry-after") and "retry-after"))
        return seen

    real, unknown = await answers("pavel"), await answers("pave1")
    assert real == unknown == [(401, "operator_credentials", None)] * 5 + [(429, "operator_locked", "retry-after")]
    failures = await pool.fetch("SELECT subject FROM audit_log WHERE action = 'auth.operator_sign_in_failed'")
    assert len(failures) == 10
    assert sum(f["subject"] == "operator:unknown" for f in failures) == 5


async def test_one_client_cannot_guess_across_usernames(behind_proxy: AsyncTestClient[Any], services: Services) -> None:
    totp = pyotp.TOTP(await staff_member(services, "quinn", "Quinn Operator"))
    for n in range(20):
        body = {"username": f"guess{n}", "password": "not the password", "totp": "123456"}
        r = await behind_proxy.post(OPERATOR, json=body, headers=_from("203.0.113.7"))
        assert r.status_code == 401, n
    body = {"username": "quinn", "password": PASSWORD, "totp": totp.now()}
    r = await behind_proxy.post(OPERATOR, json=body, headers=_from("203.0.113.7"))
    assert (r.status_code, problem_code(r)) == (429, "sign_in_rate_limited")
    assert 0 < int(r.headers["retry-after"]) <= 3600
    assert (await behind_proxy.post(OPERATOR, json=body, headers=_from("198.51.100.9"))).status_code == 200
