"""What each reason code means to the pensioner, and what to do about it (`reason.<code>.*` in the catalogue)."""

from __future__ import annotations

from dataclasses import dataclass

from core.text import keys, text

# The codes a check can end with, as the catalogue words them.
CODES: frozenset[str] = frozenset(k.split(".")[1] for k in keys("zh-CN") if k.startswith("reason."))


@dataclass(frozen=True)
class Explanation:
    code: str
    text: str
    advice: str


def explain(code: str, locale: str) -> Explanation:
    known = code if code in CODES else "unreadable_media"
    return Explanation(
        code=code, text=text(f"reason.{known}.text", locale), advice=text(f"reason.{known}.advice", locale)
    )
