"""Locale negotiation and message formatting."""

from __future__ import annotations

import string

import pytest

from core.text import CARD_STATUS_NAMES, DEFAULT_LOCALE, LOCALES, MESSAGES, message, negotiate


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


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_message_has_both_languages(code: str) -> None:
    zh, en = MESSAGES[code]
    assert zh.strip()
    assert en.strip()
    assert zh != en


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_both_languages_use_the_same_params(code: str) -> None:
    zh, en = MESSAGES[code]
    names = [{f for _, f, _, _ in string.Formatter().parse(t) if f} for t in (zh, en)]
    assert names[0] == names[1]


@pytest.mark.parametrize("status", sorted(CARD_STATUS_NAMES))
def test_card_status_names(status: str) -> None:
    zh, en = CARD_STATUS_NAMES[status]
    assert zh.strip()
    assert en.strip()


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
