"""The signed dynamic QR token: round trip, tamper detection, rendering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import uuid

import pytest
import segno

from cards.qr import QrClaims, decode, encode, render_svg, superseded

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

CLAIMS = [
    QrClaims(uuid.UUID(int=0), uuid.UUID(int=0), 0),
    QrClaims(uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID(int=2**128 - 1), 1_800_000_000),
    QrClaims(uuid.uuid4(), uuid.uuid4(), 2**32 - 1),
]


@pytest.mark.parametrize("claims", CLAIMS)
def test_round_trip(claims: QrClaims) -> None:
    token = encode(KEY, claims)
    assert decode(KEY, token) == claims


def test_token_shape() -> None:
    token = encode(KEY, CLAIMS[1])
    head, dot, tail = token.partition(".")
    assert dot == "."
    assert set(head + tail) <= set(ALPHABET)
    assert len(token) <= 128


@pytest.mark.parametrize("claims", CLAIMS)
def test_any_single_character_change_is_rejected(claims: QrClaims) -> None:
    token = encode(KEY, claims)
    for i, ch in enumerate(token):
        # Every other base64url character, including those that only differ in padding bits.
        replacements = ALPHABET if ch == "." else ALPHABET.replace(ch, "")
        for repl in replacements:
            tampered = token[:i] + repl + token[i + 1 :]
            assert decode(KEY, tampered) is None, (i, repl)


def test_other_key_is_rejected() -> None:
    token = encode(OTHER_KEY, CLAIMS[1])
    assert decode(KEY, token) is None
    assert decode(OTHER_KEY, token) == CLAIMS[1]


def test_too_long_token_is_rejected() -> None:
    assert decode(KEY, "A" * 129) is None
    assert decode(KEY, encode(KEY, CLAIMS[1]) + "A" * 128) is None


def test_padded_spelling_is_rejected() -> None:
    head, _, tail = encode(KEY, CLAIMS[1]).partition(".")
    assert decode(KEY, f"{head}=.{tail}") is None
    assert decode(KEY, f"{head}.{tail}==") is None


def test_standard_base64_spelling_is_rejected() -> None:
    # Find a token whose text contains '-' or '_' and spell it with '+' / '/'.
    for n in range(1000):
        token = encode(KEY, QrClaims(uuid.UUID(int=n), uuid.UUID(int=n * 7919), 1_800_000_000 + n))
        if "-" in token or "_" in token:
            assert decode(KEY, token.replace("-", "+").replace("_", "/")) is None
            return
    pytest.fail("no token with '-' or '_' found")


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "..", "abc", "abc.def", "not a token", "!!!!.????", "é.é", "A" * 50 + "." + "A" * 22, "\x00" * 10],
)
def test_garbage_is_rejected(garbage: str) -> None:
    assert decode(KEY, garbage) is None


def test_extra_segment_is_rejected() -> None:
    token = encode(KEY, CLAIMS[1])
    assert decode(KEY, token + ".AAAA") is None
    assert decode(KEY, token + ".") is None


def _signed(version: int, claims: QrClaims, key: bytes = KEY) -> str:
    body = struct.pack(">B16s16sI", version, claims.token_id.bytes, claims.person_id.bytes, claims.expires_at)
    tag = hmac.new(key, b"qr" + body, hashlib.sha256).digest()[:16]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(body)}.{b64(tag)}"


def test_the_layout_is_version_2() -> None:
    assert encode(KEY, CLAIMS[1]) == _signed(2, CLAIMS[1])


@pytest.mark.parametrize("version", [0, 3, 255])
def test_wrong_version_with_genuine_mac_is_rejected(version: int) -> None:
    token = _signed(version, CLAIMS[1])
    assert decode(KEY, token) is None
    assert not superseded(KEY, token)


def test_a_genuine_version_1_token_is_superseded_not_decoded() -> None:
    """Version 1 carried the card id where the person id is now: refused, but told apart from a forgery."""
    token = _signed(1, CLAIMS[1])
    assert decode(KEY, token) is None
    assert superseded(KEY, token)
    assert not superseded(OTHER_KEY, token)  # a forged one is not
    assert not superseded(KEY, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not superseded(KEY, encode(KEY, CLAIMS[1]))  # nor a current one


def test_the_code_is_no_larger_than_version_1s() -> None:
    """The person id took the card id's place: a version 5 QR code (37 modules a side) at level M."""
    for version, token in ((1, _signed(1, CLAIMS[2])), (2, encode(KEY, CLAIMS[2]))):
        code = segno.make(token, error="m", mode="byte", mask=0)
        assert (len(token), code.version, code.symbol_size(border=0)) == (73, 5, (37, 37)), version


def test_decode_does_not_check_expiry() -> None:
    expired = QrClaims(uuid.uuid4(), uuid.uuid4(), 1)
    assert decode(KEY, encode(KEY, expired)) == expired


def test_render_svg() -> None:
    svg = render_svg(encode(KEY, CLAIMS[1]))
    assert isinstance(svg, str)
    assert "<svg" in svg
    assert svg.lstrip().startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
