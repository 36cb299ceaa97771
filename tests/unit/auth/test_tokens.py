"""Access tokens, terminal keys and one-time codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from auth.tokens import (
    AccessClaims,
    issue_access_token,
    new_secret_token,
    new_terminal_key,
    otp_code,
    otp_hash,
    parse_access_token,
    secret_hash,
    split_terminal_key,
)

KEY = b"\x01" * 32
OTHER_KEY = b"\x02" * 32
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=15)
SESSION = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, key: bytes = KEY) -> str:
    return f"at.{b64(payload)}.{b64(hmac.new(key, payload, hashlib.sha256).digest())}"


@pytest.mark.parametrize("kind", ["account", "operator"])
def test_round_trip(kind: str) -> None:
    token = issue_access_token(KEY, SESSION, kind, EXPIRES)
    assert token.startswith("at.")
    assert parse_access_token(KEY, token, NOW) == AccessClaims(SESSION, kind, int(EXPIRES.timestamp()))


def test_expired_token_is_rejected() -> None:
    token = issue_access_token(KEY, SESSION, "account", EXPIRES)
    assert parse_access_token(KEY, token, EXPIRES - timedelta(seconds=1)) is not None
    assert parse_access_token(KEY, token, EXPIRES) is None
    assert parse_access_token(KEY, token, EXPIRES + timedelta(days=1)) is None


def test_other_key_is_rejected() -> None:
    token = issue_access_token(OTHER_KEY, SESSION, "account", EXPIRES)
    assert parse_access_token(KEY, token, NOW) is None
    assert parse_access_token(OTHER_KEY, token, NOW) is not None


def test_tampered_payload_or_mac_is_rejected() -> None:
    """Flip the high bit of each character's 6-bit value, so the decoded bytes always change."""
    token = issue_access_token(KEY, SESSION, "account", EXPIRES)
    for i in range(3, len(token)):
        ch = token[i]
        if ch == ".":
            continue
        flipped = ALPHABET[ALPHABET.index(ch) ^ 0b100000]
        tampered = token[:i] + flipped + token[i + 1 :]
        assert parse_access_token(KEY, tampered, NOW) is None, i


def test_swapped_payload_from_another_token_is_rejected() -> None:
    mine = issue_access_token(KEY, SESSION, "account", EXPIRES).split(".")
    other = issue_access_token(KEY, uuid.uuid4(), "operator", EXPIRES + timedelta(days=365)).split(".")
    assert parse_access_token(KEY, f"at.{other[1]}.{mine[2]}", NOW) is None


def test_forged_operator_kind_is_rejected() -> None:
    token = issue_access_token(KEY, SESSION, "account", EXPIRES)
    payload = msgspec.msgpack.encode(AccessClaims(SESSION, "operator", int(EXPIRES.timestamp())))
    forged = f"at.{b64(payload)}.{token.split('.')[2]}"
    assert parse_access_token(KEY, forged, NOW) is None


@pytest.mark.parametrize("prefix", ["rt", "AT", "tk", "", "at "])
def test_wrong_prefix_is_rejected(prefix: str) -> None:
    _, payload, mac = issue_access_token(KEY, SESSION, "account", EXPIRES).split(".")
    assert parse_access_token(KEY, f"{prefix}.{payload}.{mac}", NOW) is None


@pytest.mark.parametrize("garbage", ["", "at", "at.", "at..", "at.x.y", "at.é.é", "at.a.b.c", "Bearer at.x.y", "!!!"])
def test_garbage_is_rejected(garbage: str) -> None:
    assert parse_access_token(KEY, garbage, NOW) is None


def test_extra_segment_is_rejected() -> None:
    token = issue_access_token(KEY, SESSION, "account", EXPIRES)
    assert parse_access_token(KEY, token + ".x", NOW) is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never used in msgpack
        b"",
        msgspec.msgpack.encode([1, 2]),
        msgspec.msgpack.encode(["not-a-uuid", "account", 9_999_999_999]),
        msgspec.msgpack.encode({"session_id": str(SESSION), "kind": "account", "expires_at": 9_999_999_999}),
    ],
)
def test_genuine_mac_over_malformed_payload_is_rejected(payload: bytes) -> None:
    assert parse_access_token(KEY, signed(payload), NOW) is None


def test_genuine_mac_over_well_formed_payload_is_accepted() -> None:
    payload = msgspec.msgpack.encode(AccessClaims(SESSION, "account", int(EXPIRES.timestamp())))
    assert parse_access_token(KEY, signed(payload), NOW) == AccessClaims(SESSION, "account", int(EXPIRES.timestamp()))


def test_terminal_key_round_trip() -> None:
    terminal_id = uuid.uuid4()
    key, digest = new_terminal_key(terminal_id)
    assert key.startswith(f"tk_{terminal_id.hex}.")
    assert split_terminal_key(key) == (terminal_id, digest)
    assert digest == hashlib.sha256(key.partition(".")[2].encode()).digest()


def test_terminal_keys_are_random() -> None:
    terminal_id = uuid.uuid4()
    assert new_terminal_key(terminal_id) != new_terminal_key(terminal_id)


def test_terminal_key_with_wrong_secret_gives_other_hash() -> None:
    terminal_id = uuid.uuid4()
    key, digest = new_terminal_key(terminal_id)
    parsed = split_terminal_key(key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert parsed is not None
    assert parsed[0] == terminal_id
    assert parsed[1] != digest


@pytest.mark.parametrize(
    "key",
    [
        "",
        "tk_",
        "tk_.secret",
        f"tk_{uuid.UUID(int=5).hex}",
        f"tk_{uuid.UUID(int=5).hex}.",
        f"xx_{uuid.UUID(int=5).hex}.secret",
        f"TK_{uuid.UUID(int=5).hex}.secret",
        "tk_nothex.secret",
        f"tk_{uuid.UUID(int=5).hex[:-1]}.secret",
        f"tk_{uuid.UUID(int=5).hex}0.secret",
        f"at.{uuid.UUID(int=5).hex}.secret",
    ],
)
def test_malformed_terminal_key(key: str) -> None:
    assert split_terminal_key(key) is None


def test_new_secret_token() -> None:
    token, digest = new_secret_token("rt")
    assert token.startswith("rt.")
    assert len(token) > 40
    assert digest == secret_hash(token) == hashlib.sha256(token.encode()).digest()
    assert new_secret_token("rt")[0] != token


def test_otp_code_is_six_digits() -> None:
    codes = [otp_code() for _ in range(500)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(set(codes)) > 400


def test_otp_hash() -> None:
    base = otp_hash(KEY, "13800138000", "123456")
    assert base == otp_hash(KEY, "13800138000", "123456")
    assert len(base) == 32
    assert base != otp_hash(KEY, "13800138001", "123456")
    assert base != otp_hash(KEY, "13800138000", "123457")
    assert base != otp_hash(OTHER_KEY, "13800138000", "123456")


def test_alternative_spellings_of_an_access_token_are_refused() -> None:
    from datetime import UTC, datetime, timedelta

    from auth.tokens import issue_access_token, parse_access_token

    key = b"k" * 32
    now = datetime.now(UTC)
    token = issue_access_token(key, uuid.uuid4(), "account", now + timedelta(minutes=5))
    assert parse_access_token(key, token, now) is not None
    assert parse_access_token(key, token + "==", now) is None
