"""The notifications sent to pensioners: push title and body, SMS text, in-app inbox.

The words are the catalogue's `notice.*` entries (core.text), in "zh-CN" (the default, and what any
unknown locale gets) and "en". Readers are old, so the texts are short, plain and kind: a push title of
at most 20 Chinese or 40 English characters and a body of one or two sentences. Parameters come from
JSON, so dates and periods are ISO strings and amounts are integer fen. Card, account and ID numbers
arrive already masked and are printed as given: nothing here may ever see a full number.

Pure functions only; the outbox and the channels decide when and where a text is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from core.text import day, duration, money, month, months, resolve, text
from notifications.rules import LOCAL_TZ


class Rendered(msgspec.Struct, frozen=True):
    title: str
    body: str


# The kinds of notice, each `notice.<kind>.title` and `.body` in the catalogue; placeholders are the
# names `_fields` produces, never raw params, so a text can only print a value formatted for its locale.
KINDS: tuple[str, ...] = (
    "sign_in.code",
    "card_recovery.code",
    "certification.due",
    "certification.passed",
    "certification.confirmed_by_data",
    "certification.failed",
    "certification.retry",
    "certification.needs_review",
    "certification.home_visit",
    "payment.will_be_withheld",
    "payment.withheld",
    "payment.paid",
    "payment.back_paid",
    "payment.repaid",
    # Told whoever set it: an account changed by someone else is how a pension is diverted.
    "bank_account.set",
    # The merchant is named as it was registered with its terminal; the description a terminal sends
    # with a charge is never printed: a notice is the system speaking, and a terminal's text here
    # ("Card frozen! Call ...") would be read as ours.
    "medical.charged",
    "medical.refunded",
    "card.reported_lost",
    "death.reversed",
    "in_person.scheduled",
    "appeal.received",
    "appeal.upheld",
    "appeal.rejected",
    # Assisted certification: the code an elder hands to the relative who asked to help them (it names
    # the relative), and the elder told of each step, so that help they did not ask for is seen.
    "relative_consent.code",
    "relative.requested",
    "relative.consented",
    "relative.ended",
    "relative.certified",
)

# Money leaving or the card being blocked: the person may need to act at once, even at night.
URGENT: frozenset[str] = frozenset({"medical.charged", "medical.refunded", "card.reported_lost"})


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
    "due_date": ("due_date", day),
    "place": ("place", _as_given),
    # An operator's reason for not upholding an appeal, in their words: staff speak for the office.
    "outcome_reason": ("reason", _as_given),
    "relative_name": ("relative", _as_given),
}


def _code_lifetime(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    return {"minutes": duration(int(p["minutes"]), "minute", locale)}


def _due(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    # `stage` only decides when the reminder is sent; the words follow days_left, which is exact.
    on, left = day(p["due_date"], locale), int(p["days_left"])
    if left == 0:
        return {"when": text("notice.certification.due.today", locale, on=on)}
    return {"when": text("notice.certification.due.later", locale, on=on, left=duration(left, "day", locale))}


def _reason(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    reason = f"notice.withheld.{p['reason']}"
    return {"reason": text(f"{reason}.clause", locale), "payback": text(f"{reason}.payback", locale)}


def _restored(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    restored = p.get("months_restored") or []
    if not restored:
        return {"payback": ""}
    return {"payback": text("notice.death.reversed.restored", locale, months=months(restored, locale))}


def _scheduled(p: Mapping[str, Any], locale: str) -> dict[str, str]:
    at = datetime.fromisoformat(p["scheduled_for"]).astimezone(LOCAL_TZ)
    return {"day": day(at.date().isoformat(), locale), "time": f"{at:%H:%M}"}


# Only the fields a kind words differently from everywhere else.
_SPECIAL: dict[str, Callable[[Mapping[str, Any], str], dict[str, str]]] = {
    "sign_in.code": _code_lifetime,
    "card_recovery.code": _code_lifetime,
    "relative_consent.code": _code_lifetime,
    "certification.due": _due,
    "payment.will_be_withheld": _reason,
    "payment.withheld": _reason,
    "death.reversed": _restored,
    "in_person.scheduled": _scheduled,
}


def _fields(kind: str, locale: str, params: Mapping[str, Any]) -> dict[str, str]:
    fields = {name: fmt(params[key], locale) for key, (name, fmt) in _COMMON.items() if key in params}
    special = _SPECIAL.get(kind)
    return fields | special(params, locale) if special else fields


def render(kind: str, locale: str, params: Mapping[str, Any]) -> Rendered:
    """The title and body of `kind` in `locale` (unknown locales get zh-CN).

    Raises KeyError for an unknown kind, and for a missing parameter the kind needs.
    """
    if kind not in KINDS:
        raise KeyError(kind)
    loc = resolve(locale)
    fields = _fields(kind, loc, params)
    # A part left empty (no months to pay back) must not leave a dangling space behind.
    return Rendered(
        title=text(f"notice.{kind}.title", loc).format_map(fields).strip(),
        body=text(f"notice.{kind}.body", loc).format_map(fields).strip(),
    )


def sms_text(kind: str, locale: str, params: Mapping[str, Any]) -> str:
    """One SMS: the sender's signature (which Chinese carriers require in 【】) and the body."""
    loc = resolve(locale)
    return text("notice.sms", loc, body=render(kind, loc, params).body)
