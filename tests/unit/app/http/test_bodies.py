"""JSON request bodies: the media type, strict decoding, repeated keys and U+0000 (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest

from app.http.bodies import is_json, read_json
from app.http.schemas import Body
from core.errors import AppError


class Item(Body):
    name: str
    tags: list[str] = []


class Order(Body):
    amount_fen: int
    item: Item | None = None


def refused(body: bytes, type_: Any = Order) -> AppError:
    with pytest.raises(AppError) as info:
        read_json(body, type_)
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize(
    ("media_type", "params", "accepted"),
    [
        ("application/json", {}, True),
        ("application/json", {"charset": "utf-8"}, True),
        ("application/json", {"charset": "UTF-8"}, True),
        ("application/json", {"charset": "latin-1"}, False),
        ("application/json", {"charset": "utf-8", "version": "2"}, False),
        ("", {}, False),
        ("text/plain", {}, False),
        ("application/jsonp", {}, False),
        ("application/merge-patch+json", {}, False),
    ],
)
def test_only_json_in_utf8_is_json(media_type: str, params: dict[str, str], accepted: bool) -> None:
    assert is_json((media_type, params)) is accepted


def test_a_well_formed_body_is_decoded_into_its_type() -> None:
    body = b'{"amount_fen": 100, "item": {"name": "\xe8\x8d\xaf", "tags": ["a", "b"]}}'
    assert read_json(body, Order) == Order(amount_fen=100, item=Item(name="药", tags=["a", "b"]))


@pytest.mark.parametrize("amount", [b'"100"', b"1e2", b"100.0", b"true", b"null"])
def test_numbers_are_strict(amount: bytes) -> None:
    problem = refused(b'{"amount_fen": ' + amount + b"}")
    assert problem.code == "invalid_body"
    assert "amount_fen" in problem.params["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"amount_fen": 1, "amount_fen": 2}',
        b'{"amount_fen": 1, "item": {"name": "a", "name": "b"}}',
    ],
)
def test_a_repeated_key_is_refused(body: bytes) -> None:
    problem = refused(body)
    assert problem.code == "duplicate_key"
    assert problem.params["key"] in ("amount_fen", "name")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"amount_fen": 1, "item": {"name": "a\\u0000"}}', "name"),
        (b'{"amount_fen": 1, "item": {"name": "a", "tags": ["x", "\\u0000"]}}', "tags"),
    ],
)
def test_a_nul_character_is_refused_with_its_field(body: bytes, field: str) -> None:
    problem = refused(body)
    assert problem.code == "control_character"
    assert problem.params["field"] == field


def test_an_escaped_backslash_before_u0000_is_text() -> None:
    assert read_json(b'{"amount_fen": 1, "item": {"name": "\\\\u0000"}}', Order).item == Item(name="\\u0000")


@pytest.mark.parametrize(
    "body", [b'{"amount_fen": 1, "item": {"name": "\xff"}}', b'{"amount_fen": 1, "item": {"name": "\xc0\xaf"}}']
)
def test_invalid_or_overlong_utf8_is_refused(body: bytes) -> None:
    assert refused(body).code == "body_encoding"


def test_any_depth_is_refused_without_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert refused(deep).code == "invalid_body"  # a Struct never descends into it
    assert refused(b'{"amount_fen": ' + deep + b"}").code == "invalid_body"
    assert refused(deep, object).code == "body_too_deep"  # an untyped body would


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'{"amount_fen": 1, "other": 2}', b'{"amount_fen": NaN}'])
def test_anything_else_is_an_invalid_body(body: bytes) -> None:
    assert refused(body).code == "invalid_body"
