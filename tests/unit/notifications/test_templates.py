"""Notification texts: every kind in both locales, the formatting of money and dates, the SMS form."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import pytest

from core.text import day, money, month, months
from notifications.templates import KINDS, URGENT, Rendered, render, sms_text

LOCALES = ("zh-CN", "en")
CJK = re.compile(r"[\u4e00-\u9fff]")
ACCOUNT = "6222 **** **** 1234"
CARD = "1000****0001"

SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "sign_in.code": {"code": "482913", "minutes": 5},
    "card_recovery.code": {"code": "482913", "minutes": 5},
    "certification.due": {"due_date": "2026-12-15", "days_left": 7, "stage": 7},
    "certification.passed": {"eligible_until": "2027-12-15"},
    "certification.confirmed_by_data": {"eligible_until": "2027-12-15"},
    "certification.failed": {},
    "certification.retry": {},
    "certification.needs_review": {},
    "certification.home_visit": {},
    "payment.will_be_withheld": {
        "period": "2026-12-01",
        "pay_date": "2026-12-15",
        "amount_fen": 123456,
        "reason": "not_certified",
    },
    "payment.withheld": {"period": "2026-12-01", "amount_fen": 123456, "reason": "certification_expired"},
    "payment.paid": {"period": "2026-12-01", "amount_fen": 123456, "pay_date": "2026-12-15", "account_masked": ACCOUNT},
    "payment.back_paid": {"amount_fen": 246912, "covers": ["2026-10-01", "2026-11-01"], "account_masked": ACCOUNT},
    "payment.repaid": {"amount_fen": 123456, "covers": ["2026-11-01"], "account_masked": ACCOUNT},
    "bank_account.set": {"account_masked": ACCOUNT},
    "medical.charged": {"amount_fen": 3580, "merchant": "City Hospital Pharmacy"},
    "medical.refunded": {"amount_fen": 3580, "merchant": "City Hospital Pharmacy"},
    "card.reported_lost": {"card_masked": CARD},
    "death.reversed": {"months_restored": ["2026-10-01", "2026-11-01"]},
    "in_person.scheduled": {"scheduled_for": "2026-12-15T06:30:00+00:00", "place": "Xicheng service point, window 3"},
    "appeal.received": {"due_date": "2026-12-19"},
    "appeal.upheld": {"eligible_until": "2027-12-04"},
    "appeal.rejected": {"outcome_reason": "the bank confirms the account was closed"},
    "relative_consent.code": {"code": "482913", "minutes": 5, "relative_name": "Li Ming"},
    "relative.requested": {"relative_name": "Li Ming"},
    "relative.consented": {"relative_name": "Li Ming"},
    "relative.ended": {"relative_name": "Li Ming"},
    "relative.certified": {"relative_name": "Li Ming", "eligible_until": "2027-12-04"},
}


def test_sample_params_cover_exactly_the_kinds() -> None:
    assert len(set(KINDS)) == len(KINDS)
    assert set(SAMPLE_PARAMS) == set(KINDS)
    assert tuple(SAMPLE_PARAMS) == KINDS  # the documented order
    assert frozenset({"medical.charged", "medical.refunded", "card.reported_lost"}) == URGENT


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders(kind: str, locale: str) -> None:
    rendered = render(kind, locale, SAMPLE_PARAMS[kind])
    assert isinstance(rendered, Rendered)
    for text in (rendered.title, rendered.body):
        assert text.strip() == text
        assert text
        assert "{" not in text
        assert "}" not in text
    if locale == "en":
        assert len(rendered.title) <= 40
        assert not CJK.search(rendered.title + rendered.body)
    else:
        assert len(rendered.title) <= 20
        assert CJK.search(rendered.title)
        assert CJK.search(rendered.body)


@pytest.mark.parametrize("kind", KINDS)
def test_the_locales_say_different_things(kind: str) -> None:
    zh, en = (render(kind, locale, SAMPLE_PARAMS[kind]) for locale in LOCALES)
    assert zh.title != en.title
    assert zh.body != en.body


def test_render_takes_a_read_only_mapping() -> None:
    params = MappingProxyType(SAMPLE_PARAMS["payment.paid"])
    assert render("payment.paid", "en", params) == render("payment.paid", "en", dict(params))


def test_payment_paid_formats_money_dates_and_prints_the_masked_account() -> None:
    params = SAMPLE_PARAMS["payment.paid"]
    zh = render("payment.paid", "zh-CN", params).body
    en = render("payment.paid", "en", params).body
    assert zh == "您2026年12月的养老金1,234.56元已于2026年12月15日存入您的账户6222 **** **** 1234。"
    assert (
        en
        == "Your December 2026 pension of CNY 1,234.56 was paid into your account 6222 **** **** 1234 on 15 December 2026."
    )


def test_card_reported_lost_prints_the_masked_card() -> None:
    for locale in LOCALES:
        assert CARD in render("card.reported_lost", locale, SAMPLE_PARAMS["card.reported_lost"]).body


def test_back_paid_lists_every_covered_month() -> None:
    params = SAMPLE_PARAMS["payment.back_paid"]
    zh = render("payment.back_paid", "zh-CN", params).body
    en = render("payment.back_paid", "en", params).body
    assert "2026年10月和2026年11月" in zh
    assert "2,469.12元" in zh
    assert "October 2026 and November 2026" in en
    assert "CNY 2,469.12" in en
    assert ACCOUNT in zh
    assert ACCOUNT in en


def test_medical_charge_says_what_to_do_if_it_was_not_you() -> None:
    params = SAMPLE_PARAMS["medical.charged"]
    zh = render("medical.charged", "zh-CN", params).body
    en = render("medical.charged", "en", params).body
    assert "35.80元" in zh
    assert "如非本人操作" in zh
    assert "挂失" in zh
    assert "CNY 35.80" in en
    assert "If this was not you, report your card lost in the app" in en
    assert "City Hospital Pharmacy" in en
    assert "report your card lost" not in render("medical.refunded", "en", params).body


def test_braces_in_a_merchant_name_are_printed_not_formatted() -> None:
    params = SAMPLE_PARAMS["medical.refunded"] | {"merchant": "Shop {amount}"}
    assert "Shop {amount} has refunded CNY 35.80" in render("medical.refunded", "en", params).body


def test_sign_in_code_matches_the_current_sms_and_says_never_share() -> None:
    params = SAMPLE_PARAMS["sign_in.code"]
    assert (
        sms_text("sign_in.code", "zh-CN", params) == "【社保服务】您的登录验证码为482913，5分钟内有效。请勿告诉他人。"
    )
    assert (
        sms_text("sign_in.code", "en", params)
        == "Social Security: Your sign-in code is 482913. It expires in 5 minutes. Never share it with anyone."
    )
    assert "in 1 minute." in render("sign_in.code", "en", {"code": "482913", "minutes": 1}).body


@pytest.mark.parametrize("kind", KINDS)
def test_sms_is_the_signature_then_the_body(kind: str) -> None:
    params = SAMPLE_PARAMS[kind]
    assert sms_text(kind, "zh-CN", params) == "【社保服务】" + render(kind, "zh-CN", params).body
    assert sms_text(kind, "en-GB", params) == "Social Security: " + render(kind, "en", params).body
    assert sms_text(kind, "fr", params).startswith("【社保服务】")


def test_certification_due_in_days() -> None:
    params = SAMPLE_PARAMS["certification.due"]
    zh = render("certification.due", "zh-CN", params).body
    en = render("certification.due", "en", params).body
    assert "2026年12月15日（还有7天）" in zh
    assert "今天" not in zh
    assert "ends on 15 December 2026, in 7 days" in en
    assert "today" not in en
    one = render("certification.due", "en", params | {"days_left": 1, "stage": 1}).body
    assert "in 1 day." in one


def test_certification_due_today() -> None:
    params = SAMPLE_PARAMS["certification.due"] | {"days_left": 0, "stage": 1}
    zh = render("certification.due", "zh-CN", params).body
    en = render("certification.due", "en", params).body
    assert "今天（2026年12月15日）到期" in zh
    assert "还有" not in zh
    assert "ends today, 15 December 2026" in en
    assert "in 0 days" not in en


def test_will_be_withheld_names_the_month_amount_pay_date_and_reason() -> None:
    params = SAMPLE_PARAMS["payment.will_be_withheld"]
    zh = render("payment.will_be_withheld", "zh-CN", params).body
    en = render("payment.will_be_withheld", "en", params).body
    assert "您2026年12月的养老金1,234.56元将于2026年12月15日发放，但您还没有完成资格认证。" in zh
    assert "Your December 2026 pension of CNY 1,234.56 is due on 15 December 2026" in en
    assert "you have not done your certification yet" in en
    expired = render("payment.will_be_withheld", "en", params | {"reason": "certification_expired"}).body
    assert "your certification has expired" in expired


@pytest.mark.parametrize(
    ("reason", "zh_words", "en_words"),
    [
        (
            "not_certified",
            ("还没有完成资格认证", "认证后将为您补发"),
            ("not done your certification", "once you certify"),
        ),
        ("certification_expired", ("已过期", "认证后将为您补发"), ("has expired", "once you certify again")),
        # Only written after the report was withdrawn (the earlier wording asked the person to correct it).
        ("reported_deceased", ("死亡登记（现已撤销）", "随下次发放为您补发"), ("death report", "since been withdrawn")),
    ],
)
def test_withheld_says_why_and_how_it_is_paid_back(
    reason: str, zh_words: tuple[str, str], en_words: tuple[str, str]
) -> None:
    params = SAMPLE_PARAMS["payment.withheld"] | {"reason": reason}
    zh = render("payment.withheld", "zh-CN", params).body
    en = render("payment.withheld", "en", params).body
    assert zh.startswith("您2026年12月的养老金1,234.56元暂停发放")
    assert en.startswith("Your December 2026 pension of CNY 1,234.56 was paused because")
    assert all(words in zh for words in zh_words)
    assert all(words in en for words in en_words)


def test_death_reversed_lists_the_months_paid_back() -> None:
    params = SAMPLE_PARAMS["death.reversed"]
    zh = render("death.reversed", "zh-CN", params).body
    en = render("death.reversed", "en", params).body
    assert "2026年10月和2026年11月" in zh
    assert "补发" in zh
    assert "October 2026 and November 2026 will be paid with your next payment" in en


def test_death_reversed_without_months_promises_no_back_pay() -> None:
    zh = render("death.reversed", "zh-CN", {"months_restored": []}).body
    en = render("death.reversed", "en", {"months_restored": []}).body
    assert "补发" not in zh
    assert "next payment" not in en
    assert en.endswith("Your pension payments have restarted.")


def test_unknown_kind_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        render("payment.lost_in_post", "en", {})
    with pytest.raises(KeyError):
        sms_text("payment.lost_in_post", "zh-CN", {})


def test_missing_param_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        render("payment.paid", "en", {"period": "2026-12-01"})


def test_unknown_locale_falls_back_to_chinese() -> None:
    params = SAMPLE_PARAMS["payment.paid"]
    assert render("payment.paid", "fr", params) == render("payment.paid", "zh-CN", params)
    assert render("payment.paid", "en-GB", params) == render("payment.paid", "en", params)


@pytest.mark.parametrize(
    ("fen", "zh", "en"),
    [
        (0, "0.00元", "CNY 0.00"),
        (5, "0.05元", "CNY 0.05"),
        (50, "0.50元", "CNY 0.50"),
        (100, "1.00元", "CNY 1.00"),
        (123456, "1,234.56元", "CNY 1,234.56"),
        (100000000, "1,000,000.00元", "CNY 1,000,000.00"),
        (10**17 + 1, "1,000,000,000,000,000.01元", "CNY 1,000,000,000,000,000.01"),  # beyond float's exact range
    ],
)
def test_money(fen: int, zh: str, en: str) -> None:
    assert money(fen, "zh-CN") == zh
    assert money(fen, "en") == en


def test_dates_and_periods() -> None:
    assert day("2026-12-15", "zh-CN") == "2026年12月15日"
    assert day("2026-12-15", "en") == "15 December 2026"
    assert day("2027-01-05", "en-US") == "5 January 2027"
    assert day("2027-01-05", "fr") == "2027年1月5日"
    assert month("2026-12-01", "zh-CN") == "2026年12月"
    assert month("2026-12-01", "en") == "December 2026"
    assert month("2026-05", "en") == "May 2026"


@pytest.mark.parametrize(
    ("periods", "zh", "en"),
    [
        ([], "", ""),
        (["2026-12-01"], "2026年12月", "December 2026"),
        (["2026-11-01", "2026-12-01"], "2026年11月和2026年12月", "November 2026 and December 2026"),
        (
            ["2026-10-01", "2026-11-01", "2026-12-01"],
            "2026年10月、2026年11月和2026年12月",
            "October 2026, November 2026 and December 2026",
        ),
    ],
)
def test_months(periods: list[str], zh: str, en: str) -> None:
    assert months(periods, "zh-CN") == zh
    assert months(periods, "en") == en


def test_an_appointment_is_told_in_china_time() -> None:
    params = SAMPLE_PARAMS["in_person.scheduled"]
    assert "2026年12月15日 14:30" in render("in_person.scheduled", "zh-CN", params).body
    assert "15 December 2026 at 14:30: Xicheng service point" in render("in_person.scheduled", "en", params).body
