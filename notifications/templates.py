"""The words of the notifications sent to pensioners: push title and body, SMS text, in-app inbox.

Two locales: "zh-CN" (the default, and what any unknown locale gets) and "en". Readers are old, so
the texts are short, plain and kind: a push title of at most 20 Chinese or 40 English characters and
a body of one or two sentences. Parameters come from JSON, so dates and periods are ISO strings and
amounts are integer fen. Card, account and ID numbers arrive already masked and are printed as given:
nothing here may ever see a full number.

Pure functions only; the outbox and the channels decide when and where a text is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import msgspec

from core.text import LOCALES, negotiate


class Rendered(msgspec.Struct, frozen=True):
    title: str
    body: str


# kind -> locale -> (title, body). Placeholders are the names `_fields` produces, never raw params,
# so a template can only print a value after it has been formatted for its locale.
_TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "sign_in.code": {
        # The zh body is the sign-in SMS text people already receive; keep them identical.
        "zh-CN": ("登录验证码", "您的登录验证码为{code}，{minutes}分钟内有效。请勿告诉他人。"),
        "en": (
            "Your sign-in code",
            "Your sign-in code is {code}. It expires in {minutes}. Never share it with anyone.",
        ),
    },
    "card_recovery.code": {
        "zh-CN": (
            "解除挂失验证码",
            "您正在解除社保卡挂失，验证码为{code}，{minutes}分钟内有效。如非本人操作，请勿告诉他人并致电12333。",
        ),
        "en": (
            "Your code to cancel the loss report",
            "Your code to cancel the loss report on your social security card is {code}. It expires in "
            "{minutes}. If you did not ask for it, share it with no one and call 12333.",
        ),
    },
    "certification.due": {
        "zh-CN": (
            "请及时完成资格认证",
            "您的养老金资格认证{when}到期，请在到期前用App完成人脸认证，否则养老金将暂停发放。",
        ),
        "en": (
            "Please renew your certification",
            "Your pension certification {when}. Please do the face certification in the app before it ends, "
            "or your pension will be paused.",
        ),
    },
    "certification.passed": {
        "zh-CN": ("资格认证已通过", "您的养老金资格认证已通过，养老金照常发放。本次认证有效期至{eligible_until}。"),
        "en": (
            "Certification passed",
            "Your certification was successful and your pension continues as usual. "
            "It is valid until {eligible_until}.",
        ),
    },
    "certification.failed": {
        "zh-CN": ("资格认证未通过", "这次未能确认是您本人。请在App中再试一次，或联系社保经办机构。"),
        "en": (
            "Certification not passed",
            "We could not confirm that it was you. Please try again in the app, or contact your social security office.",
        ),
    },
    "certification.retry": {
        "zh-CN": (
            "请重新录制认证视频",
            "您的认证视频无法使用，可能是光线太暗或没有拍清脸部。请在明亮的地方重新录制。",
        ),
        "en": (
            "Please record your video again",
            "Your video could not be used, perhaps because it was too dark or your face could not be seen. "
            "Please record it again in a bright place.",
        ),
    },
    "certification.needs_review": {
        "zh-CN": ("认证正在人工审核", "工作人员正在核对您的认证，结果会通知您。审核期间养老金照常发放。"),
        "en": (
            "Your certification is being checked",
            "A staff member is checking your certification and we will tell you the result. "
            "Your pension is not affected meanwhile.",
        ),
    },
    "certification.home_visit": {
        "zh-CN": ("工作人员将上门认证", "工作人员将到您家中为您完成资格认证，上门前会先与您联系。"),
        "en": (
            "A staff member will visit you",
            "A staff member will visit you at home to complete your certification. They will contact you first.",
        ),
    },
    "payment.will_be_withheld": {
        "zh-CN": (
            "养老金可能暂停发放",
            "您{period}的养老金{amount}将于{pay_date}发放，但{reason}。"
            "请在此之前用App完成人脸认证，否则这笔养老金将暂停发放。",
        ),
        "en": (
            "Your pension may be paused",
            "Your {period} pension of {amount} is due on {pay_date}, but {reason}. "
            "Please do the face certification in the app before then, or this payment will be paused.",
        ),
    },
    "payment.withheld": {
        "zh-CN": ("养老金暂停发放", "您{period}的养老金{amount}暂停发放，因为{reason}。{payback}"),
        "en": ("Your pension was paused", "Your {period} pension of {amount} was paused because {reason}. {payback}"),
    },
    "payment.paid": {
        "zh-CN": ("养老金已发放", "您{period}的养老金{amount}已于{pay_date}存入您的账户{account}。"),
        "en": ("Pension paid", "Your {period} pension of {amount} was paid into your account {account} on {pay_date}."),
    },
    "payment.back_paid": {
        "zh-CN": ("养老金已补发", "您{covers}暂停发放的养老金共{amount}已补发，存入您的账户{account}。"),
        "en": (
            "Paused pension paid back",
            "Your paused pension for {covers}, {amount} in total, has been paid into your account {account}.",
        ),
    },
    # The merchant is named as it was registered with its terminal; the description a terminal sends
    # with a charge is never printed: a notice is the system speaking, and a terminal's text here
    # ("Card frozen! Call ...") would be read as ours.
    "medical.charged": {
        "zh-CN": (
            "医保账户支出提醒",
            "您的医保个人账户在{merchant}扫码支付{amount}。如非本人操作，请立即在App中挂失社保卡。",
        ),
        "en": (
            "Medical account payment",
            "{amount} was paid from your medical account at {merchant}. "
            "If this was not you, report your card lost in the app straight away.",
        ),
    },
    "medical.refunded": {
        "zh-CN": ("医保账户退款提醒", "{merchant}已将{amount}退回您的医保个人账户。"),
        "en": ("Medical account refund", "{merchant} has refunded {amount} to your medical account."),
    },
    "card.reported_lost": {
        "zh-CN": ("社保卡已挂失", "您的社保卡{card}已挂失，暂时不能使用。如非本人操作，请尽快联系社保经办机构。"),
        "en": (
            "Your card was reported lost",
            "Your social security card {card} has been reported lost and cannot be used. "
            "If this was not you, please contact your social security office straight away.",
        ),
    },
    "death.reversed": {
        "zh-CN": ("您的记录已更正", "很抱歉，此前关于您的死亡登记有误，现已更正，养老金恢复发放。{payback}"),
        "en": (
            "Your record has been corrected",
            "We are sorry: a death report on your record was wrong and has been corrected. "
            "Your pension payments have restarted.{payback}",
        ),
    },
}

KINDS: tuple[str, ...] = tuple(_TEXTS)

# Money leaving or the card being blocked: the person may need to act at once, even at night.
URGENT: frozenset[str] = frozenset({"medical.charged", "medical.refunded", "card.reported_lost"})

# reason -> locale -> (clause that reads after "but"/"because", how the money comes back).
# The clause fits both the warning before pay day and the notice after it.
_REASONS: dict[str, dict[str, tuple[str, str]]] = {
    "not_certified": {
        "zh-CN": ("您还没有完成资格认证", "完成人脸认证后将为您补发。"),
        "en": ("you have not done your certification yet", "It will be paid to you once you certify in the app."),
    },
    "certification_expired": {
        "zh-CN": ("您的资格认证已过期", "重新完成人脸认证后将为您补发。"),
        "en": ("your certification has expired", "It will be paid to you once you certify again in the app."),
    },
    # Only written once a wrong death report has been withdrawn (payments.deaths' reversal).
    "reported_deceased": {
        "zh-CN": ("曾有一份关于您的死亡登记（现已撤销）", "将随下次发放为您补发。"),
        "en": (
            "we had a death report in your name, which has since been withdrawn",
            "It will be paid to you with the next payment.",
        ),
    },
}

# Spelled out rather than taken from `calendar`, whose names follow the process's LC_TIME locale.
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _english(locale: str) -> bool:
    # `render` passes a locale already worked out; the formatters also take a raw tag ("en-US").
    return locale == "en" if locale in LOCALES else negotiate(locale) == "en"


def money(fen: int, locale: str) -> str:
    """Integer fen as yuan with thousands separators: "1,234.56元" or "CNY 1,234.56"."""
    yuan, cents = divmod(abs(fen), 100)
    amount = f"{'-' if fen < 0 else ''}{yuan:,}.{cents:02d}"
    return f"CNY {amount}" if _english(locale) else f"{amount}元"


def day(iso_date: str, locale: str) -> str:
    """ "2026-12-15" as "2026年12月15日" or "15 December 2026"."""
    d = date.fromisoformat(iso_date)
    return f"{d.day} {_MONTH_NAMES[d.month - 1]} {d.year}" if _english(locale) else f"{d.year}年{d.month}月{d.day}日"


def month(iso_period: str, locale: str) -> str:
    """A pension period ("2026-12-01", or "2026-12" as the API writes it) as "2026年12月" or "December 2026"."""
    d = date.fromisoformat(iso_period if len(iso_period) > 7 else f"{iso_period}-01")
    return f"{_MONTH_NAMES[d.month - 1]} {d.year}" if _english(locale) else f"{d.year}年{d.month}月"


def months(iso_periods: Sequence[str], locale: str) -> str:
    """Several periods: "2026年10月、2026年11月" or "October 2026 and November 2026"; "" for none."""
    names = [month(p, locale) for p in iso_periods]
    if not _english(locale):
        return "、".join(names)
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _english_count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _say(locale: str, zh: str, en: str) -> str:
    return en if _english(locale) else zh


def _as_given(value: Any, _locale: str) -> str:
    return str(value)


# Params formatted the same way in every kind that carries them: param -> (placeholder, formatter).
_COMMON: dict[str, tuple[str, Callable[[Any, str], str]]] = {
    "amount_fen": ("amount", money),
    "period": ("period", month),
    "pay_date": ("pay_date", day),
    "eligible_until": ("eligible_until", day),
    "covers": ("covers", months),
    "account_masked": ("account", _as_given),
    "card_masked": ("card", _as_given),
    "code": ("code", _as_given),
    "merchant": ("merchant", _as_given),
}


def _code_lifetime(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    minutes = int(p["minutes"])
    return {"minutes": _say(locale, str(minutes), _english_count(minutes, "minute"))}


def _due(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    # `stage` only decides when the reminder is sent; the words follow days_left, which is exact.
    on, left = day(p["due_date"], locale), int(p["days_left"])
    if left == 0:
        return {"when": _say(locale, f"今天（{on}）", f"ends today, {on}")}
    return {"when": _say(locale, f"将于{on}（还有{left}天）", f"ends on {on}, in {_english_count(left, 'day')}")}


def _reason(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    clause, payback = _REASONS[p["reason"]][locale]
    return {"reason": clause, "payback": payback}


def _restored(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    restored = p.get("months_restored") or []
    if not restored:
        return {"payback": ""}
    listed = months(restored, locale)
    return {
        "payback": _say(
            locale,
            f"暂停发放的{listed}养老金将随下次发放一并补发。",
            f" The pension held back for {listed} will be paid with your next payment.",
        )
    }


# Only the fields a kind words differently from everywhere else.
_SPECIAL: dict[str, Callable[[Mapping[str, Any], str], dict[str, str]]] = {
    "sign_in.code": _code_lifetime,
    "card_recovery.code": _code_lifetime,
    "certification.due": _due,
    "payment.will_be_withheld": _reason,
    "payment.withheld": _reason,
    "death.reversed": _restored,
}


def _fields(kind: str, locale: str, params: Mapping[str, Any]) -> dict[str, str]:
    fields = {name: fmt(params[key], locale) for key, (name, fmt) in _COMMON.items() if key in params}
    special = _SPECIAL.get(kind)
    return fields | special(params, locale) if special else fields


def render(kind: str, locale: str, params: Mapping[str, Any]) -> Rendered:
    """The title and body of `kind` in `locale` (unknown locales get zh-CN).

    Raises KeyError for an unknown kind, and for a missing parameter the kind needs.
    """
    texts = _TEXTS[kind]
    loc = negotiate(locale)
    title, body = texts[loc]
    fields = _fields(kind, loc, params)
    return Rendered(title=title.format_map(fields), body=body.format_map(fields))


def sms_text(kind: str, locale: str, params: Mapping[str, Any]) -> str:
    """One SMS: the sender's signature (which Chinese carriers require in 【】) followed by the body."""
    loc = negotiate(locale)
    return _say(loc, "【社保服务】", "Social Security: ") + render(kind, loc, params).body
