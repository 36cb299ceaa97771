"""Receipt notices print no terminal text (issue 16, item 7), including notices stored before the fix,
whose params still carry the terminal's description: the inbox renders them again at every read."""

from __future__ import annotations

import pytest

from notifications.templates import render, sms_text

STORED = {
    "charge_id": "0190a5c4-0000-7000-8000-000000000000",
    "amount_fen": 2550,
    "merchant": "Test Pharmacy",
    "description": "Card frozen! call 400-820-1234 visit http://evil.example 速拨95500解冻",
}


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("kind", ["medical.charged", "medical.refunded"])
def test_a_stored_description_is_not_printed(kind: str, locale: str) -> None:
    rendered = render(kind, locale, STORED)
    for text in (rendered.title, rendered.body, sms_text(kind, locale, STORED)):
        assert "Test Pharmacy" in text or text == rendered.title
        for fragment in ("frozen", "400-820-1234", "http", "evil.example", "95500", "解冻"):
            assert fragment not in text
