"""Log redaction and the JSON formatter."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auth.tokens import issue_access_token, new_terminal_key
from infra.crypto import mask_national_id
from infra.logging import JsonFormatter, redact, request_id_var

ID_DIGIT = "110101194503072319"
ID_X = "11010519491231002X"
PHONE = "13800138000"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("socialcard.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.mark.parametrize(
    "national_id",
    [ID_DIGIT, ID_X, "11010519491231002x"],
)
def test_redact_removes_raw_national_id(national_id: str) -> None:
    out = redact(f"person {national_id} imported")
    assert national_id not in out
    assert out.startswith("person ")
    assert out.endswith(" imported")


@pytest.mark.parametrize(
    "national_id",
    [ID_DIGIT, ID_X],
)
def test_redact_masks_national_id_like_mask_national_id(national_id: str) -> None:
    assert redact(f"id={national_id};") == f"id={mask_national_id(national_id)};"


def test_redact_phone() -> None:
    assert redact(f"sms to {PHONE} sent") == "sms to 138****8000 sent"
    assert redact(f"phone:{PHONE}") == "phone:138****8000"


@pytest.mark.parametrize("text", ["order 123456789012", "amount 350000", "2026-03-01T12:00:00", "12800138000"])
def test_redact_leaves_other_numbers(text: str) -> None:
    assert redact(text) == text


def test_redact_access_token() -> None:
    token = issue_access_token(b"k" * 32, uuid.uuid4(), "account", datetime.now(UTC) + timedelta(minutes=5))
    out = redact(f"Authorization: Bearer {token}")
    assert out == "Authorization: Bearer at.<redacted>"
    assert token.split(".")[1] not in out
    assert token.split(".")[2] not in out


@pytest.mark.parametrize(
    "token",
    ["at.abcdefghijklmnopqrstuvwxyz", "rt.ABCDEFGHIJKLMNOP-_0123456789", "qr.aaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbb"],
)
def test_redact_bearer_like_tokens(token: str) -> None:
    out = redact(f"token={token} end")
    assert token not in out
    assert out == f"token={token[:2]}.<redacted> end"


def test_redact_terminal_key() -> None:
    key, _ = new_terminal_key(uuid.uuid4())
    out = redact(f"key {key}")
    assert key.partition(".")[2] not in out
    assert "<redacted>" in out


def test_redact_short_prefixed_words_are_kept() -> None:
    assert redact("look at.this") == "look at.this"


def test_json_formatter_emits_valid_json_with_request_id() -> None:
    reset = request_id_var.set("req-123")
    try:
        line = JsonFormatter().format(record("hello %s", "world", user="u1"))
    finally:
        request_id_var.reset(reset)
    data = json.loads(line)
    assert data["request_id"] == "req-123"
    assert data["msg"] == "hello world"
    assert data["level"] == "info"
    assert data["logger"] == "socialcard.test"
    assert data["user"] == "u1"
    assert "ts" in data
    assert "\n" not in line


def test_json_formatter_without_request_id() -> None:
    data = json.loads(JsonFormatter().format(record("hello")))
    assert "request_id" not in data


@pytest.mark.parametrize("national_id", [ID_DIGIT, ID_X])
def test_json_formatter_hides_id_in_message(national_id: str) -> None:
    line = JsonFormatter().format(record("activating %s", national_id))
    json.loads(line)
    assert national_id not in line


@pytest.mark.parametrize("national_id", [ID_DIGIT, ID_X])
def test_json_formatter_hides_id_in_extra(national_id: str) -> None:
    line = JsonFormatter().format(record("activating", national_id=national_id, nested={"id": national_id}))
    data = json.loads(line)
    assert national_id not in line
    assert "national_id" in data


def test_json_formatter_hides_phone_and_token_in_extra() -> None:
    token = "at.abcdefghijklmnopqrstuvwxyz0123.ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    line = JsonFormatter().format(record("otp sent", phone=PHONE, auth=token))
    data = json.loads(line)
    assert PHONE not in line
    assert data["phone"] == "138****8000"
    assert data["auth"] == "at.<redacted>"


def test_json_formatter_non_serialisable_extra() -> None:
    data = json.loads(
        JsonFormatter().format(record("x", when=datetime(2026, 1, 1, tzinfo=UTC), ident=uuid.UUID(int=1)))
    )
    assert data["when"] == "2026-01-01 00:00:00+00:00"
    assert data["ident"] == str(uuid.UUID(int=1))


def test_json_formatter_exception_is_redacted() -> None:
    try:
        raise ValueError(f"bad id {ID_X}")
    except ValueError:
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(rec)
    data = json.loads(line)
    assert "ValueError" in data["exc"]
    assert ID_X not in line


def test_json_formatter_chinese_text_kept_readable() -> None:
    line = JsonFormatter().format(record("已激活"))
    assert "已激活" in line
