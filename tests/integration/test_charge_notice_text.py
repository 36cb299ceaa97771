"""A terminal's charge description never speaks in the system's voice (issue 16, item 7): the receipt
and refund notices, pushed and in the inbox, in both languages, name the merchant by the name it was
registered under and print nothing the terminal sent; the description stays on the receipt record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from app.services import Services
from infra.config import Settings
from notifications.dispatcher import Dispatcher
from notifications.push import push_channel
from tests.doubles.fcm_server import FcmServer
from tests.factories import mint_qr, person_id_of, post_charge
from tests.ledger_checks import allocate

# What a rogue or hijacked terminal sends as the "description" of a charge.
SCAM = "Card frozen! call 400-820-1234 visit http://evil.example/unfreeze 速拨95500解冻"
FRAGMENTS = ("frozen", "400-820-1234", "http", "evil.example", "95500", "解冻")

CHARGED = {
    "zh-CN": "您的医保个人账户在Test Pharmacy扫码支付25.50元。如非本人操作，请立即在App中挂失社保卡。",
    "en": "CNY 25.50 was paid from your medical account at Test Pharmacy. "
    "If this was not you, report your card lost in the app straight away.",
}
REFUNDED = {
    "zh-CN": "Test Pharmacy已将5.00元退回您的医保个人账户。",
    "en": "Test Pharmacy has refunded CNY 5.00 to your medical account.",
}


def _clean(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, (fragment, text)


async def test_receipt_notices_name_the_registered_merchant_and_never_the_terminals_text(
    client: Any,
    services: Services,
    settings: Settings,
    pool: asyncpg.Pool,
    cardholder: dict[str, Any],
    terminal_headers: dict[str, str],
    fcm: FcmServer,
    tmp_path: Path,
) -> None:
    headers = cardholder["headers"]
    await allocate(services, tmp_path, cardholder["person"], 10_000)
    body = {"push_token": "fcm-scam-test", "platform": "android", "app_version": "3.2.1", "locale": "en"}
    assert (await client.post("/v1/devices", json=body, headers=headers)).status_code == 201

    # The merchant's name is the terminal's record, never the request's.
    r = await client.post(
        "/v1/terminal/charges",
        json={"qr_token": await mint_qr(client, headers), "amount_fen": 100, "description": "x", "merchant": "社保局"},
        headers={**terminal_headers, "Idempotency-Key": "named-itself"},
    )
    assert r.status_code == 400
    r = await post_charge(client, terminal_headers, await mint_qr(client, headers), 2_550, description=SCAM)
    assert r.status_code == 201, r.text
    charge = r.json()
    assert charge["description"] == SCAM  # the terminal's receipt keeps what it sent
    r = await client.post(
        f"/v1/terminal/charges/{charge['charge_id']}/refunds",
        json={"amount_fen": 500},
        headers={**terminal_headers, "Idempotency-Key": "refund-scam"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["description"] == SCAM

    # The push, in the device's language.
    fcm_settings = msgspec.structs.replace(settings, fcm_url=fcm.url, fcm_project_id="socialcard-test")
    push = push_channel(fcm_settings)
    try:
        assert await Dispatcher(pool, fcm_settings, push, services.sms).dispatch("push") == 2
    finally:
        await push.aclose()
    pushed = {r.message["data"]["kind"]: r.message["notification"] for r in fcm.received}
    assert pushed["medical.charged"]["body"] == CHARGED["en"]
    assert pushed["medical.refunded"]["body"] == REFUNDED["en"]
    for shown in pushed.values():
        _clean(shown["title"] + shown["body"])

    # The inbox, in the reader's language.
    for locale in ("zh-CN", "en"):
        r = await client.get("/v1/inbox", headers={**headers, "Accept-Language": locale})
        assert r.status_code == 200, r.text
        _clean(r.text)
        items = {item["kind"]: item["body"] for item in r.json()["items"]}
        assert (items["medical.charged"], items["medical.refunded"]) == (CHARGED[locale], REFUNDED[locale])

    # Nor is the terminal's text kept with the notices: no template can print it by mistake.
    person_id = await person_id_of(pool, cardholder["person"].phone)
    params = await pool.fetch(
        "SELECT params FROM notifications WHERE person_id = $1 AND kind LIKE 'medical.%' ORDER BY kind", person_id
    )
    assert [sorted(p["params"]) for p in params] == [
        ["amount_fen", "charge_id", "merchant"],
        ["amount_fen", "charge_id", "merchant", "refund_id"],
    ]
    assert {p["params"]["merchant"] for p in params} == {"Test Pharmacy"}  # the terminal's registered merchant

    # The cardholder's own statement still says what the charge was for, as the terminal's data.
    entries = (await client.get("/v1/account", headers=headers)).json()["entries"]
    assert {(e["kind"], e["merchant"], e["description"]) for e in entries if e["kind"] != "allocation"} == {
        ("charge", "Test Pharmacy", SCAM),
        ("refund", "Test Pharmacy", SCAM),
    }
