"""Every route, every kind of bad input: a problem+json 4xx with a message, never a 5xx.

The routes are read from the OpenAPI document, so a new route is covered without editing this test.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from infra.config import Settings
from tests.factories import applicant, form_token, post_sign_in

# Written out, not read from the spec: a new route that forgot its guard must fail the 401 sweep below.
PUBLIC = {
    "/health/live",
    "/health/ready",
    "/v1/auth/otp",
    "/v1/auth/otp/verify",
    "/v1/auth/refresh",
    "/v1/auth/operator",
}


def _concrete(path: str) -> str:
    """The path with its parameters filled in (a year, or else an id)."""
    return re.sub(r"\{[^}]+\}", "0190a5c4-0000-7000-8000-000000000000", path.replace("{year}", "2026"))


def _wrong_role(path: str, cardholder: dict[str, Any], terminal_headers: dict[str, str]) -> dict[str, str]:
    """Credentials of a role the route does not serve: cardholders for terminal and operator routes."""
    return cardholder["headers"] if path.startswith(("/v1/terminal", "/v1/review")) else terminal_headers


def _right_role(
    path: str, cardholder: dict[str, Any], terminal: dict[str, str], operator: dict[str, str], admin: dict[str, str]
) -> dict[str, str]:
    if path.startswith("/v1/terminal"):
        return terminal
    if path.startswith("/v1/admin"):
        return admin
    return operator if path.startswith("/v1/review") else cardholder["headers"]


async def _operations(client: Any) -> list[tuple[str, str, dict[str, Any]]]:
    spec = (await client.get("/schema/openapi.json")).json()
    return [
        (method.upper(), _concrete(path), op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _json_body(op: dict[str, Any]) -> bool:
    """The operation takes JSON only (Litestar decodes it, under the app's body limit): not the selfie
    upload (multipart too, with its own limit) nor the bank's CSV file."""
    return list(op.get("requestBody", {}).get("content", {})) == ["application/json"]


def _assert_problem(r: Any, statuses: set[int]) -> None:
    assert r.status_code in statuses, (r.request.method, r.request.url.path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == r.status_code
    assert body["code"]
    assert body["detail"]
    assert "Traceback" not in r.text
    _assert_api_headers(r)


# Every API answer, errors included: personal data is never kept by a cache, read as another type
# or shown inside another page.
API_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def _assert_api_headers(r: Any) -> None:
    for name, value in API_HEADERS.items():
        assert r.headers.get(name) == value, (r.request.method, r.request.url.path, name, r.headers.get(name))


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Bad input is the caller's mistake: at most a warning, never an error with a stack trace."""
    flooded = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not flooded, [r.getMessage() for r in flooded]


async def test_openapi_describes_every_operation_and_the_security_scheme(client: Any) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    operations = await _operations(client)
    assert len(operations) >= 11
    for method, path, op in operations:
        assert op.get("summary"), (method, path)
        if path not in PUBLIC:
            assert op.get("security") == [{"BearerToken": []}], (method, path)
    documented_public = {path for _, path, op in operations if not op.get("security")}
    assert documented_public == PUBLIC


async def test_missing_or_bad_credentials_get_401(client: Any) -> None:
    for method, path, _ in await _operations(client):
        if path in PUBLIC:
            continue
        _assert_problem(await client.request(method, path), {401})
        r = await client.request(method, path, headers={"Authorization": "Bearer at.forged.token"})
        _assert_problem(r, {401})
        assert r.json()["code"] == "token_invalid"


async def test_wrong_role_gets_403(client: Any, cardholder: dict[str, Any], terminal_headers: dict[str, str]) -> None:
    for method, path, _ in await _operations(client):
        if path in PUBLIC or path == "/v1/auth/logout":
            continue
        headers = _wrong_role(path, cardholder, terminal_headers)
        _assert_problem(await client.request(method, path, headers=headers, json={}), {403})


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"unexpected_field": 1}', "application/json"),
        (
            b'{"phone": 13800138000, "code": 1, "token": 5, "national_id": 7, "refresh_token": 9, "username": 1}',
            "application/json",
        ),
        (b"\xff\xfe", "application/json"),
    ],
    ids=["malformed", "wrong-shape", "unknown-field", "wrong-types", "not-utf8"],
)
async def test_bad_bodies_get_400(
    client: Any,
    cardholder: dict[str, Any],
    terminal_headers: dict[str, str],
    operator_headers: dict[str, str],
    admin_headers: dict[str, str],
    body: bytes,
    content_type: str,
) -> None:
    for method, path, op in await _operations(client):
        if not _json_body(op):
            continue
        headers = {"Content-Type": content_type}
        headers.update(_right_role(path, cardholder, terminal_headers, operator_headers, admin_headers))
        _assert_problem(await client.request(method, path, content=body, headers=headers), {400})


async def test_too_large_bodies_get_413(
    client: Any,
    cardholder: dict[str, Any],
    terminal_headers: dict[str, str],
    operator_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    big = b'{"phone": "' + b"1" * (2 * 1024 * 1024) + b'"}'
    for method, path, op in await _operations(client):
        if not _json_body(op):
            continue
        headers = {"Content-Type": "application/json"}
        headers.update(_right_role(path, cardholder, terminal_headers, operator_headers, admin_headers))
        _assert_problem(await client.request(method, path, content=big, headers=headers), {413})


async def test_bad_national_id_and_phone_get_clear_reasons(client: Any, cardholder: dict[str, Any]) -> None:
    r = await client.post("/v1/card/activation", json={"national_id": "12345"}, headers=cardholder["headers"])
    _assert_problem(r, {400})
    r = await client.post("/v1/auth/otp", json={"phone": "12345"}, headers={"Accept-Language": "en"})
    _assert_problem(r, {400})
    assert r.json()["detail"] == "Enter an 11-digit mainland China mobile number."
    r = await client.post("/v1/auth/otp", json={"phone": "12345"})
    assert r.json()["detail"] == "请输入11位手机号码。"


async def test_unknown_route_and_method(client: Any) -> None:
    _assert_problem(await client.get("/v1/nothing-here"), {404})
    _assert_problem(await client.delete("/v1/auth/otp"), {405})


# -- bodies that are not plain, well-formed JSON (issue 16) ------------------------------------------
DEEP = b"[" * 1000 + b"]" * 1000

# (body, the problem's code): each was a 500 with a traceback, or was read as something it is not.
REFUSED_BODIES = {
    "invalid-utf8": (b'{"phone": "\xff\xfe13800138000"}', "body_encoding"),
    "overlong-utf8": (b'{"phone": "\xc0\xaf13800138000"}', "body_encoding"),
    "nested-1000-deep": (DEEP, "invalid_body"),
    "nested-1000-deep-in-a-field": (b'{"phone": ' + DEEP + b"}", "invalid_body"),
    "nul": (b'{"phone": "13800\\u0000138000"}', "control_character"),
    "duplicate-key": (b'{"phone": "13800138000", "phone": "13800138001"}', "duplicate_key"),
}


@pytest.mark.parametrize(("body", "code"), list(REFUSED_BODIES.values()), ids=list(REFUSED_BODIES))
async def test_refused_bodies_before_sign_in_get_400_without_a_traceback(
    client: Any, caplog: pytest.LogCaptureFixture, body: bytes, code: str
) -> None:
    r = await client.post(
        "/v1/auth/otp", content=body, headers={"Content-Type": "application/json", "Accept-Language": "en"}
    )
    _assert_problem(r, {400})
    assert r.json()["code"] == code, r.text
    _assert_no_traceback(caplog)


async def test_a_nul_character_is_refused_before_the_database(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL text cannot hold U+0000: refused with the field's name, not left to the database."""
    r = await client.post(
        "/v1/auth/operator",
        json={"username": "admin\u0000", "password": "x", "totp": "123456"},
        headers={"Accept-Language": "en"},
    )
    _assert_problem(r, {400})
    assert r.json()["code"] == "control_character"
    assert "username" in r.json()["detail"]
    assert not [
        record for record in caplog.records if record.levelno >= logging.WARNING
    ]  # not even the database's refusal


@pytest.mark.parametrize(
    ("s3_key", "code"),
    [
        (b'"{prefix}\xff.mp4"', "body_encoding"),
        (b'"{prefix}\xc0\xaf.mp4"', "body_encoding"),
        (b'"{prefix}a\\u0000.mp4"', "control_character"),
        (DEEP, "invalid_body"),
    ],
    ids=["invalid-utf8", "overlong-utf8", "nul", "nested-1000-deep"],
)
async def test_undecodable_submissions_get_400_without_a_traceback(
    client: Any,
    pool: asyncpg.Pool,
    importer: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    s3_key: bytes,
    code: str,
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    prefix = challenge["upload"]["presigned_post"]["key_prefix"].encode()
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        content=b'{"s3_key": ' + s3_key.replace(b"{prefix}", prefix) + b"}",
        headers={**who.headers, "Content-Type": "application/json"},
    )
    _assert_problem(r, {400})
    assert r.json()["code"] == code, r.text
    _assert_no_traceback(caplog)


def _part(headers: bytes, value: bytes) -> bytes:
    return b"--xx\r\n" + headers + b"\r\n\r\n" + value + b"\r\n--xx--\r\n"


@pytest.mark.parametrize(
    "body",
    [
        _part(b'Content-Disposition: form-data; name="video"', b"\xff\xfe"),
        _part(b'Content-Disposition: form-data; name="video"\r\nContent-Type: text/plain; charset=no-such', b"x"),
        _part(b'Content-Disposition: form-data; name="video"', b"a\x00b"),
    ],
    ids=["invalid-utf8", "unknown-charset", "nul"],
)
async def test_undecodable_multipart_gets_400_without_a_traceback(
    client: Any, pool: asyncpg.Pool, importer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    who = await applicant(client, pool, importer, tmp_path)
    challenge = (await client.post("/v1/certifications/challenges", headers=who.headers)).json()
    r = await client.post(
        f"/v1/certifications/challenges/{challenge['id']}/submission",
        content=body,
        headers={**who.headers, "Content-Type": "multipart/form-data; boundary=xx"},
    )
    _assert_problem(r, {400})
    assert r.json()["code"] in {"body_encoding", "control_character"}, r.text
    _assert_no_traceback(caplog)


async def test_a_nul_character_in_a_console_form_is_refused_before_the_database(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    page = await client.get("/console/sign-in")
    r = await post_sign_in(client, form_token(page.text), "admin\x00", "123456")
    assert r.status_code == 400, r.text
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonp",
        "application/json-patch+json",
        "application/json; charset=latin-1",
        "application/json; version=2",
    ],
)
async def test_json_bodies_must_be_sent_as_json(client: Any, content_type: str | None) -> None:
    headers = {"Accept-Language": "en"} | ({"Content-Type": content_type} if content_type else {})
    r = await client.post("/v1/auth/otp", content=b'{"phone": "13800138000"}', headers=headers)
    _assert_problem(r, {415})
    assert r.json()["code"] == "unsupported_media_type"
    assert "application/json" in r.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=UTF-8", 'application/json;charset="utf-8"']
)
async def test_json_with_a_utf8_charset_is_read(client: Any, content_type: str) -> None:
    r = await client.post("/v1/auth/otp", content=b'{"phone": "13800138000"}', headers={"Content-Type": content_type})
    assert r.status_code == 202, r.text


async def test_every_json_route_refuses_other_media_types(
    client: Any,
    cardholder: dict[str, Any],
    terminal_headers: dict[str, str],
    operator_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    routes = [(method, path) for method, path, op in await _operations(client) if _json_body(op)]
    assert routes
    for method, path in routes:
        headers = {"Content-Type": "text/plain"}
        headers.update(_right_role(path, cardholder, terminal_headers, operator_headers, admin_headers))
        r = await client.request(method, path, content=b"{}", headers=headers)
        _assert_problem(r, {415})


@pytest.mark.parametrize("amount", [b'"100"', b"1e2", b"100.0", b"true"], ids=["string", "exponent", "float", "bool"])
async def test_amounts_are_json_integers_only(client: Any, terminal_headers: dict[str, str], amount: bytes) -> None:
    headers = {**terminal_headers, "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
    charge = b'{"qr_token": "not-a-token", "amount_fen": ' + amount + b', "description": "drugs"}'
    r = await client.post("/v1/terminal/charges", content=charge, headers=headers)
    _assert_problem(r, {400})
    assert r.json()["code"] == "invalid_body"
    assert "amount_fen" in r.json()["detail"]
    refund = b'{"amount_fen": ' + amount + b"}"
    r = await client.post(f"/v1/terminal/charges/{uuid.uuid4()}/refunds", content=refund, headers=headers)
    _assert_problem(r, {400})
    assert r.json()["code"] == "invalid_body"


# Full-width, Arabic-Indic and Devanagari digits, and what int() also takes.
NOT_ASCII_YEARS = ["２０２６", "٢٠٢٦", "२०२६", "+2026", "2_026", " 2026"]


@pytest.mark.parametrize("year", NOT_ASCII_YEARS)
async def test_years_and_periods_are_ascii_digits_only(
    client: Any, cardholder: dict[str, Any], admin_headers: dict[str, str], year: str
) -> None:
    r = await client.get(f"/v1/payments/statements/{year}", headers=cardholder["headers"])
    _assert_problem(r, {400})
    assert r.json()["code"] == "year_invalid"
    r = await client.post("/v1/admin/disbursements", json={"period": f"{year}-１２"}, headers=admin_headers)
    _assert_problem(r, {400})
    r = await client.post("/v1/admin/disbursements", json={"period": f"{year}-12"}, headers=admin_headers)
    _assert_problem(r, {400})


async def test_api_answers_with_personal_data_carry_the_security_headers(
    client: Any, cardholder: dict[str, Any]
) -> None:
    r = await client.get("/v1/card", headers=cardholder["headers"])
    assert r.status_code == 200, r.text
    _assert_api_headers(r)
    for path in ("/health/live", "/health/ready", "/schema/openapi.json"):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        _assert_api_headers(r)


DOCS_UI = ("/schema", "/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc")


async def test_api_docs_run_no_script_outside_development(client: Any) -> None:
    """No page loads a script from a CDN; the document itself is always there."""
    for path in DOCS_UI:
        r = await client.get(path)
        assert "<script" not in r.text, path
        _assert_api_headers(r)
    assert (await client.get("/schema/openapi.json")).json()["paths"]


async def test_api_docs_ui_is_served_when_development_asks_for_it(settings: Settings) -> None:
    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, api_docs_ui=True))) as client:
        r = await client.get("/schema/swagger")
        assert r.status_code == 200
        assert "swagger" in r.text.lower()
        assert (await client.get("/schema/openapi.json")).json()["paths"]
