"""Every word the product shows, in Simplified Chinese (the default) and English, and how it formats
money, dates and counts in each.

The words live in one gettext catalogue per language, `core/locales/<locale>/LC_MESSAGES/socialcard.po`,
keyed by a stable `area.name` msgid (`error.*` API and console refusals, `card_status.*`, `reason.*`
certification outcomes, `console.*`, `status.*` stored states, `notice.*` push/SMS/inbox texts,
`format.*`). Translators work on those files with any PO editor; `tests/unit/core/test_text.py` holds
both languages to the same keys and the same placeholders. Babel parses Accept-Language tags and
supplies each language's digit grouping, date, list and unit formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton
from babel.lists import format_list
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.units import format_unit

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")

# The product's locale tags, by the language an Accept-Language tag names: any Chinese gets the
# Simplified Chinese texts (the only Chinese there is), any English the English ones.
_BY_LANGUAGE = {"zh": "zh-CN", "en": "en"}
# Babel's locale data per product locale. English follows British forms: "15 December 2026" reads the
# same way round as the Chinese date, where the American "December 15, 2026" does not.
_FORMATS = {"zh-CN": Locale.parse("zh_CN"), "en": Locale.parse("en_GB")}
# Where each locale's catalogue lies: the gettext folder names.
_FOLDERS = {"zh-CN": "zh_CN", "en": "en"}

_CATALOGUE_DIR = Path(__file__).with_name("locales")


def _load(locale: str) -> dict[str, str]:
    path = _CATALOGUE_DIR / _FOLDERS[locale] / "LC_MESSAGES" / "socialcard.po"
    with path.open("rb") as po:
        catalogue = read_po(po)
    return {str(m.id): str(m.string) for m in catalogue if m.id and m.string}


_CATALOGUES: dict[str, dict[str, str]] = {locale: _load(locale) for locale in LOCALES}


def keys(locale: str) -> frozenset[str]:
    """The keys a language's catalogue has (for the checks that keep the catalogues in step)."""
    return frozenset(_CATALOGUES[locale])


def _weighted(accept_language: str) -> list[tuple[float, int, str]]:
    weighted = []
    for position, part in enumerate(accept_language.split(",")):
        tag, *attributes = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for attribute in attributes:
            name, _, value = attribute.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and 0.0 < quality <= 1.0:
            weighted.append((-quality, position, tag))
    return sorted(weighted)


def _language_of(tag: str) -> str | None:
    if tag == "*":
        return DEFAULT_LOCALE
    tag = tag.replace("_", "-")
    # Babel reads scripts, regions and ISO 639-2 codes ("zh-Hant-TW", "eng"); a tag it cannot read
    # whole (private-use extensions) still names its language first.
    for candidate in (tag, tag.split("-")[0]):
        try:
            return _BY_LANGUAGE.get(Locale.parse(candidate, sep="-").language)
        except (ValueError, TypeError, UnknownLocaleError):
            continue
    return None


def negotiate(accept_language: str | None) -> str:
    """The locale an Accept-Language header prefers most (RFC 9110: q-weights, q=0 refuses; zh-CN
    when nothing it names is offered)."""
    for _, _, tag in _weighted(accept_language or ""):
        if (locale := _language_of(tag)) is not None:
            return locale
    return DEFAULT_LOCALE


def resolve(locale: str) -> str:
    """A product locale as given, or the one a raw tag ("en-US") stands for."""
    return locale if locale in _CATALOGUES else negotiate(locale)


def text(key: str, locale: str, /, **params: object) -> str:
    """The words for `key` in `locale`, with `params` filled in (KeyError for a key no catalogue has)."""
    loc = resolve(locale)
    template = _CATALOGUES[loc].get(key) or _CATALOGUES[DEFAULT_LOCALE][key]
    return template.format(**params) if params else template


def message(code: str, locale: str, /, **params: object) -> str:
    """The text of the refusal `code`; a `card_status` parameter is shown by its name in that language.

    An unknown code gets the internal-error text and a missing parameter the unfilled text: a refusal
    always has words, even when the program that raised it got them wrong.
    """
    key = f"error.{code}" if f"error.{code}" in _CATALOGUES[DEFAULT_LOCALE] else "error.internal_error"
    if (status := params.get("card_status")) is not None and f"card_status.{status}" in _CATALOGUES[DEFAULT_LOCALE]:
        params["card_status"] = text(f"card_status.{status}", locale)
    try:
        return text(key, locale, **params)
    except (KeyError, IndexError):
        return text(key, locale)


def money(fen: int, locale: str) -> str:
    """Integer fen as yuan with the language's digit grouping: "1,234.56元" or "CNY 1,234.56"."""
    loc = resolve(locale)
    amount = format_decimal(Decimal(fen) / 100, format="#,##0.00", locale=_FORMATS[loc])
    return text("format.money", loc, amount=amount)


def number(count: int, locale: str) -> str:
    """A count with the language's digit grouping ("1,000,000")."""
    return format_decimal(count, locale=_FORMATS[resolve(locale)])


def day(iso_date: str, locale: str) -> str:
    """ "2026-12-15" as "2026年12月15日" or "15 December 2026"."""
    return format_date(date.fromisoformat(iso_date), "long", locale=_FORMATS[resolve(locale)])


def month(iso_period: str, locale: str) -> str:
    """A pension period ("2026-12-01", or "2026-12" as the API writes it) as "2026年12月" or "December 2026"."""
    d = date.fromisoformat(iso_period if len(iso_period) > 7 else f"{iso_period}-01")
    return format_skeleton("yMMMM", d, locale=_FORMATS[resolve(locale)])


def months(iso_periods: Sequence[str], locale: str) -> str:
    """Several periods: "2026年10月和2026年11月" or "October 2026 and November 2026"; "" for none."""
    names = [month(p, locale) for p in iso_periods]
    return format_list(names, locale=_FORMATS[resolve(locale)]) if names else ""


def duration(count: int, unit: str, locale: str) -> str:
    """A count of `unit` ("minute", "day") spelled out: "5 minutes", "1 day", "5分钟"."""
    return format_unit(count, f"duration-{unit}", length="long", locale=_FORMATS[resolve(locale)])
