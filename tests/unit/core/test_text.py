"""Locale negotiation and message formatting."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from core.text import (
    DEFAULT_LOCALE,
    LOCALES,
    day,
    duration,
    keys,
    message,
    money,
    month,
    months,
    negotiate,
    number,
    text,
)


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("en-US,en;q=0.9", "en"),
        ("en", "en"),
        ("EN-gb", "en"),
        ("zh-CN", "zh-CN"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("fr-FR,en;q=0.5", "en"),
        ("de, zh;q=0.5", "zh-CN"),
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("fr", "zh-CN"),
        ("*", "zh-CN"),
        (" , ;q=1", "zh-CN"),
        # q-weights (RFC 9110 12.5.4): the most preferred offered language, and q=0 refuses one
        ("en;q=0, zh", "zh-CN"),
        ("en;q=0.3, zh;q=0.8", "zh-CN"),
        ("zh;q=0.2, en", "en"),
        ("fr, en;q=0.9, zh;q=0.9", "en"),
        ("zh-CN;q=0, en;q=0", "zh-CN"),
        ("en;q=bogus, zh;q=0.5", "zh-CN"),
        ("en;q=1.5", "zh-CN"),
        ("zh-Hant-TW;q=0.9, en;q=0.8", "zh-CN"),
        ("en-US-x-private", "en"),
        ("x-klingon, en;q=0.1", "en"),
    ],
)
def test_negotiate(header: str | None, locale: str) -> None:
    assert negotiate(header) == locale


def test_defaults() -> None:
    assert DEFAULT_LOCALE == "zh-CN"
    assert LOCALES == ("zh-CN", "en")


def test_message_formats_params() -> None:
    assert message("otp_invalid", "en", left=3) == "The code is wrong. 3 tries left."
    assert message("otp_invalid", "zh-CN", left=3) == "验证码错误，还可尝试3次。"
    assert (
        message("otp_rate_limited", "en", minutes=10)
        == "Too many codes were sent to this number. Try again in 10 minutes."
    )
    assert message("invalid_body", "en", detail="bad phone") == "The request is not valid: bad phone"


def test_message_without_params() -> None:
    assert message("not_found", "en") == "Nothing was found at this address."
    assert message("not_found", "zh-CN") == "未找到请求的内容。"


def test_message_unknown_locale_is_chinese() -> None:
    assert message("not_found", "fr") == message("not_found", "zh-CN")


def test_message_unknown_code_is_internal_error() -> None:
    assert message("no_such_code", "en") == message("internal_error", "en")


def test_message_missing_param_returns_template() -> None:
    assert message("otp_invalid", "en") == "The code is wrong. {left} tries left."


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_the_catalogues_have_the_same_keys() -> None:
    assert keys("zh-CN") == keys("en")
    assert len(keys("en")) > 300


@pytest.mark.parametrize("key", sorted(keys("zh-CN")))
def test_every_entry_has_both_languages_with_the_same_placeholders(key: str) -> None:
    zh, en = text(key, "zh-CN"), text(key, "en")
    assert zh.strip()
    assert en.strip()
    assert _placeholders(zh) == _placeholders(en)
    if not key.startswith("format."):
        assert zh != en


def test_card_status_is_named_in_the_language() -> None:
    assert (
        message("card_not_active", "en", card_status="reported_lost") == "The card is reported lost and cannot be used."
    )
    assert message("card_not_active", "zh-CN", card_status="reported_lost") == "社保卡当前状态为“已挂失”，不能使用。"


def test_formats_follow_the_language() -> None:
    assert money(123456789, "en") == "CNY 1,234,567.89"
    assert money(-5, "zh-CN") == "-0.05元"
    assert number(1_000_000, "zh-CN") == "1,000,000"
    assert day("2026-12-15", "en") == "15 December 2026"
    assert day("2026-12-15", "zh-CN") == "2026年12月15日"
    assert month("2026-12", "en") == "December 2026"
    assert months(["2026-10-01", "2026-11-01", "2026-12-01"], "en") == "October 2026, November 2026 and December 2026"
    assert months(["2026-10-01", "2026-11-01"], "zh-CN") == "2026年10月和2026年11月"
    assert months([], "en") == ""
    assert duration(1, "minute", "en") == "1 minute"
    assert duration(5, "day", "en-US") == "5 days"
    assert duration(5, "minute", "zh-CN") == "5分钟"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("EN_gb", "en"),
        ("zh-CN", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("fr", "zh-CN"),
        ("eng", "en"),  # ISO 639-2 for English: negotiate reads any "en…" tag as English
        ("", "zh-CN"),
        (None, "zh-CN"),
    ],
)
def test_a_stored_or_sent_locale_is_read_as_zh_cn_or_en(locale: str | None, expected: str) -> None:
    # (was notifications.templates.locale_of, a second picker; templates now use negotiate)
    assert negotiate(locale) == expected


def test_params_may_take_any_name() -> None:
    # A refusal names the offending field: `key` and `locale` are params like any other.
    assert (
        message("duplicate_key", "en", key="phone") == "The field `phone` appears more than once in the request body."
    )


_PACKAGES = ("app", "core", "auth", "cards", "certification", "persons", "review", "payments", "notifications", "infra")
_RAISED = re.compile(
    r"\b(?:AppError|BadRequest|Unauthorized|PaymentRequired|Forbidden|NotFound|Conflict|Gone|Unprocessable|"
    r"UnsupportedMedia|TooManyRequests|ServiceUnavailable|Refusal\(\d+,)\s*\(?\s*\"([a-z_]+)\""
)


def test_every_refusal_the_code_raises_has_words() -> None:
    # A code without a catalogue entry reaches the app as the internal-error text: say it before a user does.
    root = Path(__file__).resolve().parents[3]
    raised = {
        code
        for package in _PACKAGES
        for path in (root / package).rglob("*.py")
        for code in _RAISED.findall(path.read_text(encoding="utf-8"))
    }
    assert len(raised) > 50
    assert sorted(code for code in raised if f"error.{code}" not in keys("en")) == []
