"""Every route, every kind of bad input: a problem+json 4xx with a message, never a 5xx.

The routes are read from the OpenAPI document, so a new route is covered without editing this test.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

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


def _assert_problem(r: Any, statuses: set[int]) -> None:
    assert r.status_code in statuses, (r.request.method, r.request.url.path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == r.status_code
    assert body["code"]
    assert body["detail"]
    assert "Traceback" not in r.text


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
        if "requestBody" not in op:
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
        if "requestBody" not in op:
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
