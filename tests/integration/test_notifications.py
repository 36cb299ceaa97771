"""Notifications on the real database: devices, the notices the outbox writes with a charge, a refund,
a card loss and the other events, the inbox, the reminder scan and warnings, a run's payment notices,
and the dead-letter API's guard."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Self

import asyncpg
import pytest

from app.jobs import run_worker
from app.services import Services
from core.errors import Unauthorized
from infra.config import Settings
from infra.crypto import mask_account
from infra.db import unit_of_work
from notifications.outbox import ANNOUNCE_RUN_JOB, publish_event
from notifications.rules import pay_day_release, release_at
from tests.factories import (
    activated_cardholder,
    bearer,
    import_pensioners,
    mint_qr,
    person_id_of,
    post_charge,
    problem_code,
    record_passed_check,
    recover_card,
    sample_person,
    sign_in,
    write_jsonl,
)
from tests.ledger_checks import allocate

DEVICES = "/v1/devices"
INBOX = "/v1/inbox"
CHARGES = "/v1/terminal/charges"


# -- helpers -----------------------------------------------------------------------------------------
async def _certify_until(pool: asyncpg.Pool, person_id: uuid.UUID, until: date | None) -> None:
    await pool.execute("UPDATE persons SET certified_until = $2 WHERE id = $1", person_id, until)


async def _register(client: Any, headers: dict[str, str], token: str, **fields: Any) -> dict[str, Any]:
    body = {"push_token": token, "platform": "android", "app_version": "3.2.1", **fields}
    r = await client.post(DEVICES, json=body, headers=headers)
    assert r.status_code == 201, r.text
    device: dict[str, Any] = r.json()
    return device


async def _notices(pool: asyncpg.Pool, person_id: uuid.UUID, kind: str | None = None) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT id, kind, params, urgent, dedupe_key, shown_from, read_at FROM notifications
           WHERE person_id = $1 AND ($2::text IS NULL OR kind = $2) ORDER BY id""",
        person_id,
        kind,
    )


async def _deliveries(pool: asyncpg.Pool, notification_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT channel, device_id, state, attempts, next_attempt_at FROM deliveries
           WHERE notification_id = $1 ORDER BY channel, device_id""",
        notification_id,
    )


async def _timed(work: Awaitable[Any]) -> tuple[Any, datetime, datetime]:
    """What `work` returned, and the clock just before and just after it."""
    before = datetime.now(UTC)
    result = await work
    return result, before, datetime.now(UTC)


async def _publish(
    pool: asyncpg.Pool, kind: str, person_id: uuid.UUID | None, payload: dict[str, Any], key: str
) -> tuple[datetime, datetime]:
    async def work() -> None:
        async with unit_of_work(pool) as uow:
            await publish_event(uow, kind, person_id, payload, key)

    _, before, after = await _timed(work())
    return before, after


@pytest.fixture
async def holder(cardholder: dict[str, Any], pool: asyncpg.Pool) -> dict[str, Any]:
    """The cardholder with an empty inbox. (The fixture's face check told them of its pass: see
    test_a_settled_face_check_is_told_to_the_person.)"""
    person_id = await person_id_of(pool, cardholder["person"].phone)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM deliveries WHERE notification_id IN (SELECT id FROM notifications WHERE person_id = $1)",
            person_id,
        )
        assert await conn.execute("DELETE FROM notifications WHERE person_id = $1", person_id) == "DELETE 1"
    return cardholder


# -- devices -----------------------------------------------------------------------------------------
async def test_a_device_is_registered_moved_removed_and_reactivated(
    client: Any, pool: asyncpg.Pool, importer: Any, cardholder: dict[str, Any], tmp_path: Path
) -> None:
    first = cardholder
    second = await activated_cardholder(client, pool, importer, tmp_path)
    first_id, second_id = (
        await person_id_of(pool, first["person"].phone),
        await person_id_of(pool, second["person"].phone),
    )

    device = await _register(client, first["headers"], "fcm-token-a")
    assert set(device) == {"id", "platform", "locale", "app_version", "registered_at"}
    assert (device["platform"], device["locale"], device["app_version"]) == ("android", "zh-CN", "3.2.1")
    row = await pool.fetchrow(
        "SELECT person_id, push_token, deactivated_at FROM devices WHERE id = $1", uuid.UUID(device["id"])
    )
    assert row is not None
    assert (row["person_id"], row["push_token"], row["deactivated_at"]) == (first_id, "fcm-token-a", None)

    # The same app install signed in by someone else: the token (and the device's id) moves with it;
    # the first person's row stays, retired, for the deliveries that name it.
    moved = await _register(client, second["headers"], "fcm-token-a", platform="ios", locale="en", app_version="3.3.0")
    assert moved["id"] == device["id"]
    assert (moved["platform"], moved["locale"], moved["app_version"]) == ("ios", "en", "3.3.0")
    active = "SELECT count(*) FROM devices WHERE person_id = $1 AND deactivated_at IS NULL"
    assert await pool.fetchval(active, first_id) == 0
    assert await pool.fetchval(active, second_id) == 1
    left = await pool.fetchrow("SELECT deactivated_reason FROM devices WHERE person_id = $1", first_id)
    assert left is not None
    assert left["deactivated_reason"] == "moved"
    owner = await pool.fetchrow("SELECT person_id, device_id FROM push_tokens WHERE push_token = 'fcm-token-a'")
    assert owner is not None
    assert (owner["person_id"], str(owner["device_id"])) == (second_id, device["id"])

    # Only its owner can remove it; someone else's device is as good as unknown.
    r = await client.delete(f"{DEVICES}/{device['id']}", headers=first["headers"])
    assert r.status_code == 404
    assert problem_code(r) == "device_not_found"
    r = await client.delete(f"{DEVICES}/{uuid.uuid4()}", headers=second["headers"])
    assert r.status_code == 404
    assert problem_code(r) == "device_not_found"
    assert await pool.fetchval(active, second_id) == 1

    r = await client.delete(f"{DEVICES}/{device['id']}", headers=second["headers"])
    assert r.status_code == 204, r.text
    gone = await pool.fetchrow(
        "SELECT deactivated_at, deactivated_reason FROM devices WHERE person_id = $1 AND id = $2",
        second_id,
        uuid.UUID(device["id"]),
    )
    assert gone is not None
    assert gone["deactivated_at"] is not None
    assert gone["deactivated_reason"] == "removed"
    assert await pool.fetchval(active, second_id) == 0
    r = await client.delete(f"{DEVICES}/{device['id']}", headers=second["headers"])
    assert r.status_code == 204  # removing again is no error, and keeps the first removal's time
    assert (
        await pool.fetchval(
            "SELECT deactivated_at FROM devices WHERE person_id = $1 AND id = $2", second_id, uuid.UUID(device["id"])
        )
        == (gone["deactivated_at"])
    )

    # Registered again (by the first person now): active again, with no reason left over.
    again = await _register(client, first["headers"], "fcm-token-a")
    assert again["id"] == device["id"]
    row = await pool.fetchrow(
        "SELECT person_id, deactivated_at, deactivated_reason FROM devices WHERE id = $1 AND deactivated_at IS NULL",
        uuid.UUID(device["id"]),
    )
    assert row is not None
    assert (row["person_id"], row["deactivated_at"], row["deactivated_reason"]) == (first_id, None, None)
    assert await pool.fetchval("SELECT person_id FROM push_tokens WHERE push_token = 'fcm-token-a'") == first_id


async def test_bad_registrations_are_refused(
    client: Any, pool: asyncpg.Pool, importer: Any, cardholder: dict[str, Any], tmp_path: Path
) -> None:
    good = {"push_token": "fcm-token", "platform": "android", "app_version": "3.2.1"}
    for bad in (
        {**good, "platform": "windows"},
        {**good, "locale": "fr"},
        {**good, "push_token": ""},
        {**good, "device_name": "my phone"},  # unknown field
        {"push_token": "fcm-token", "platform": "android"},  # no app_version
    ):
        r = await client.post(DEVICES, json=bad, headers=cardholder["headers"])
        assert r.status_code == 400, (bad, r.text)
        assert problem_code(r) == "invalid_body"
    assert await pool.fetchval("SELECT count(*) FROM devices") == 0

    r = await client.post(DEVICES, json=good)
    assert r.status_code == 401

    # Signed in with a pensioner's phone but the card never activated: not known to be that person.
    person = sample_person()
    report = await importer.import_file(write_jsonl(tmp_path / "unlinked.jsonl", [person.row()]))
    assert report.created == 1, report.errors
    tokens = await sign_in(client, pool, person.phone)
    unlinked = bearer(tokens["access_token"])
    r = await client.post(DEVICES, json=good, headers=unlinked)
    assert r.status_code == 403
    assert problem_code(r) == "identity_not_linked"
    r = await client.get(INBOX, headers=unlinked)
    assert r.status_code == 403
    assert problem_code(r) == "identity_not_linked"
    assert await pool.fetchval("SELECT count(*) FROM devices") == 0


async def test_a_sixth_phone_retires_the_oldest(client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any]) -> None:
    person_id = await person_id_of(pool, cardholder["person"].phone)
    ids = [(await _register(client, cardholder["headers"], f"fcm-token-{n}"))["id"] for n in range(6)]
    rows = await pool.fetch(
        "SELECT id, deactivated_reason FROM devices WHERE person_id = $1 AND deactivated_at IS NOT NULL", person_id
    )
    assert [(str(r["id"]), r["deactivated_reason"]) for r in rows] == [(ids[0], "replaced")]
    active = await pool.fetch(
        "SELECT id FROM devices WHERE person_id = $1 AND deactivated_at IS NULL ORDER BY registered_at", person_id
    )
    assert [str(r["id"]) for r in active] == ids[1:]

    # The oldest phone registering again comes back, and the now-oldest other one goes.
    await _register(client, cardholder["headers"], "fcm-token-0")
    active = await pool.fetch(
        "SELECT push_token FROM devices WHERE person_id = $1 AND deactivated_at IS NULL", person_id
    )
    assert sorted(r["push_token"] for r in active) == [f"fcm-token-{n}" for n in (0, 2, 3, 4, 5)]


# -- charges and refunds -------------------------------------------------------------------------------
async def test_a_charge_tells_the_holder_at_once_once_and_a_refund_too(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    holder: dict[str, Any],
    terminal_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    await allocate(services, tmp_path, holder["person"], 10_000)
    person_id = await person_id_of(pool, holder["person"].phone)
    device = await _register(client, holder["headers"], "fcm-token-charge")
    token = await mint_qr(client, holder["headers"])

    r, before, after = await _timed(post_charge(client, terminal_headers, token, 2_550, key="order-1"))
    assert r.status_code == 201, r.text
    charge_id = r.json()["charge_id"]
    (notice,) = await _notices(pool, person_id)
    assert (notice["kind"], notice["urgent"]) == ("medical.charged", True)
    assert notice["dedupe_key"] == f"medical.charged:{charge_id}"
    assert notice["params"] == {"charge_id": charge_id, "amount_fen": 2_550, "merchant": "Test Pharmacy"}
    assert notice["read_at"] is None
    assert before <= notice["shown_from"] <= after
    (delivery,) = await _deliveries(pool, notice["id"])
    assert (delivery["channel"], str(delivery["device_id"]), delivery["state"], delivery["attempts"]) == (
        "push",
        device["id"],
        "pending",
        0,
    )
    assert before <= delivery["next_attempt_at"] <= after  # urgent: due now, quiet hours or not

    # The terminal's retry is the same charge: no second notice.
    replay = await post_charge(client, terminal_headers, token, 2_550, key="order-1")
    assert (replay.status_code, replay.json()["charge_id"]) == (201, charge_id)
    assert len(await _notices(pool, person_id)) == 1
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 1

    # A charge refused for want of money tells nobody anything.
    r = await post_charge(client, terminal_headers, await mint_qr(client, holder["headers"]), 1_000_000)
    assert r.status_code == 402
    assert problem_code(r) == "insufficient_balance"
    assert len(await _notices(pool, person_id)) == 1
    assert await pool.fetchval("SELECT count(*) FROM domain_events WHERE kind LIKE 'medical.%'") == 1

    headers = {**terminal_headers, "Idempotency-Key": "refund-1"}
    r, before, after = await _timed(
        client.post(f"{CHARGES}/{charge_id}/refunds", json={"amount_fen": 500}, headers=headers)
    )
    assert r.status_code == 201, r.text
    (refund,) = await _notices(pool, person_id, "medical.refunded")
    assert refund["urgent"] is True
    assert refund["dedupe_key"] == f"medical.refunded:{r.json()['refund_id']}"
    assert (refund["params"]["amount_fen"], refund["params"]["charge_id"]) == (500, charge_id)
    (delivery,) = await _deliveries(pool, refund["id"])
    assert (delivery["channel"], str(delivery["device_id"])) == ("push", device["id"])
    assert before <= delivery["next_attempt_at"] <= after
    assert len(await _notices(pool, person_id)) == 2


# -- the inbox -----------------------------------------------------------------------------------------
async def test_the_inbox_shows_reads_and_pages_the_notices_in_the_readers_language(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    holder: dict[str, Any],
    terminal_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    await allocate(services, tmp_path, holder["person"], 10_000)
    headers = holder["headers"]
    r = await client.get(INBOX, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "unread_count": 0, "next_cursor": None}

    r = await post_charge(client, terminal_headers, await mint_qr(client, holder["headers"]), 2_550)
    assert r.status_code == 201, r.text
    r = await client.get(INBOX, headers=headers)
    assert r.status_code == 200, r.text
    inbox = r.json()
    assert (inbox["unread_count"], inbox["next_cursor"]) == (1, None)
    (item,) = inbox["items"]
    assert set(item) == {"id", "kind", "title", "body", "shown_at", "read_at"}
    assert (item["kind"], item["read_at"]) == ("medical.charged", None)
    assert item["title"] == "医保账户支出提醒"
    assert item["body"] == "您的医保个人账户在Test Pharmacy扫码支付25.50元。如非本人操作，请立即在App中挂失社保卡。"
    r = await client.get(INBOX, headers={**headers, "Accept-Language": "en-GB,en;q=0.9"})
    (english,) = r.json()["items"]
    assert english["id"] == item["id"]
    assert english["title"] == "Medical account payment"
    assert english["body"] == (
        "CNY 25.50 was paid from your medical account at Test Pharmacy. "
        "If this was not you, report your card lost in the app straight away."
    )

    r = await client.post(f"{INBOX}/{item['id']}/read", headers={**headers, "Accept-Language": "en"})
    assert r.status_code == 200, r.text
    read = r.json()
    assert (read["id"], read["title"]) == (item["id"], "Medical account payment")
    assert read["read_at"] is not None
    r = await client.get(INBOX, headers=headers)
    assert r.json()["unread_count"] == 0
    assert r.json()["items"][0]["read_at"] == read["read_at"]
    r = await client.post(f"{INBOX}/{item['id']}/read", headers=headers)
    assert r.status_code == 200
    assert r.json()["read_at"] == read["read_at"]  # reading again changes nothing

    # Someone else's notice, or none at all, is not found.
    (other,) = [p.id for p in await import_pensioners(importer, pool, tmp_path, 1)]
    await _publish(pool, "certification.failed", other, {}, "test:other")
    other_notice = await pool.fetchval("SELECT id FROM notifications WHERE person_id = $1", other)
    for unknown in (other_notice, uuid.uuid4()):
        r = await client.post(f"{INBOX}/{unknown}/read", headers=headers)
        assert r.status_code == 404
        assert problem_code(r) == "notification_not_found"
    assert await pool.fetchval("SELECT read_at FROM notifications WHERE id = $1", other_notice) is None

    # Three more notices, then every one exactly once over pages of two, newest first.
    for amount in (100, 200, 300):
        r = await post_charge(client, terminal_headers, await mint_qr(client, holder["headers"]), amount)
        assert r.status_code == 201, r.text
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get(INBOX, params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        assert page["unread_count"] == 3
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    person_id = await person_id_of(pool, holder["person"].phone)
    newest_first = [str(n["id"]) for n in reversed(await _notices(pool, person_id))]
    assert [i["id"] for i in seen] == newest_first
    assert len(set(newest_first)) == 4
    assert ["3.00元" in i["body"] for i in seen] == [True, False, False, False]
    assert seen[-1]["id"] == item["id"]

    for bad in ("not a cursor", "bm9wZQ=="):
        r = await client.get(INBOX, params={"cursor": bad}, headers=headers)
        assert r.status_code == 400
        assert problem_code(r) == "cursor_invalid"


# -- card loss -----------------------------------------------------------------------------------------
async def test_a_card_reported_lost_is_told_at_once_with_the_number_masked(
    client: Any, pool: asyncpg.Pool, holder: dict[str, Any]
) -> None:
    person_id = await person_id_of(pool, holder["person"].phone)
    card_number: str = holder["card"]["card_number"]
    masked = mask_account(card_number)
    assert masked != card_number

    r, before, after = await _timed(client.post("/v1/card/loss", headers=holder["headers"]))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reported_lost"
    (notice,) = await _notices(pool, person_id)
    assert (notice["kind"], notice["urgent"], notice["params"]) == ("card.reported_lost", True, {"card_masked": masked})
    # No phone registered: it goes by SMS, at once although it may be night.
    (delivery,) = await _deliveries(pool, notice["id"])
    assert (delivery["channel"], delivery["device_id"]) == ("sms", None)
    assert before <= delivery["next_attempt_at"] <= after
    event = await pool.fetchval("SELECT payload::text FROM domain_events WHERE kind = 'card.reported_lost'")
    assert card_number not in event

    for language, words in (("zh-CN", "社保卡已挂失"), ("en", "Your card was reported lost")):
        r = await client.get(INBOX, headers={**holder["headers"], "Accept-Language": language})
        (item,) = r.json()["items"]
        assert item["title"] == words
        assert masked in item["body"]
        assert card_number not in item["body"]

    # Reporting again is the same report: no second notice. Recovery (with a face check passed since the
    # report, and a new code) is an event the holder is not sent.
    r = await client.post("/v1/card/loss", headers=holder["headers"])
    assert r.status_code == 200
    await record_passed_check(pool, holder["person"].phone)
    r = await recover_card(client, pool, holder["person"].phone, holder["headers"])
    assert r.status_code == 200, r.text
    assert await pool.fetchval("SELECT count(*) FROM domain_events WHERE kind = 'card.recovered'") == 1
    assert [n["kind"] for n in await _notices(pool, person_id) if n["kind"].startswith("card.")] == [
        "card.reported_lost"
    ]


# -- which events become notices -----------------------------------------------------------------------
async def test_a_settled_face_check_is_told_to_the_person(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any]
) -> None:
    # The fixture's pass went through certification.service.settle, as the worker's does.
    person_id = await person_id_of(pool, cardholder["person"].phone)
    check_id = await pool.fetchval("SELECT id FROM certification_checks WHERE person_id = $1", person_id)
    until = await pool.fetchval("SELECT certified_until FROM persons WHERE id = $1", person_id)
    (notice,) = await _notices(pool, person_id)
    assert (notice["kind"], notice["urgent"], notice["dedupe_key"]) == (
        "certification.passed",
        False,
        f"certification:{check_id}:passed",
    )
    assert notice["params"]["eligible_until"] == until.isoformat()
    assert [d["channel"] for d in await _deliveries(pool, notice["id"])] == ["sms"]  # no phone registered then
    r = await client.get(INBOX, headers={**cardholder["headers"], "Accept-Language": "en"})
    (item,) = r.json()["items"]
    assert item["title"] == "Certification passed"
    assert f"{until.day} " in item["body"]
    assert str(until.year) in item["body"]


NOTIFIED: dict[str, tuple[dict[str, Any], str]] = {
    # kind -> (payload as its use case writes it, zh-CN title)
    "certification.passed": (
        {"check_id": "c1", "status": "passed", "reasons": [], "eligible_until": "2027-11-23", "decided_by": "worker"},
        "资格认证已通过",
    ),
    "certification.failed": ({"check_id": "c2", "status": "failed", "reasons": ["mismatch"]}, "资格认证未通过"),
    "certification.retry": ({"check_id": "c3", "status": "retry", "reasons": ["too_dark"]}, "请重新录制认证视频"),
    "certification.needs_review": ({"check_id": "c4", "status": "needs_review", "reasons": []}, "认证正在人工审核"),
    "certification.home_visit": ({"check_id": "c5", "status": "home_visit", "reasons": []}, "工作人员将上门认证"),
    "death.reversed": ({"death_record_id": "d1", "months_restored": ["2026-10-01"]}, "您的记录已更正"),
}
EVENT_ONLY: dict[str, dict[str, Any]] = {
    "card.recovered": {"card_masked": "****0001"},
    "reference.unusable": {"photo_key": "photos/x.jpg", "reasons": ["no_face"]},
    "disbursement.completed": {"run_id": "r1", "period": "2026-10-01"},
}


async def test_events_a_person_is_told_about_write_a_notice_and_others_only_the_event(
    client: Any, pool: asyncpg.Pool, importer: Any, holder: dict[str, Any], tmp_path: Path
) -> None:
    person_id = await person_id_of(pool, holder["person"].phone)
    device = await _register(client, holder["headers"], "fcm-token-events")
    (no_phone,) = [p.id for p in await import_pensioners(importer, pool, tmp_path, 1)]

    for kind, (payload, _) in NOTIFIED.items():
        before, after = await _publish(pool, kind, person_id, payload, f"test:{kind}")
        (notice,) = await _notices(pool, person_id, kind)
        assert (notice["urgent"], notice["params"], notice["dedupe_key"]) == (False, payload, f"test:{kind}")
        (delivery,) = await _deliveries(pool, notice["id"])
        assert (delivery["channel"], str(delivery["device_id"]), delivery["state"]) == ("push", device["id"], "pending")
        # Not urgent: it waits out the night (if it is night in China now).
        assert release_at(before, urgent=False) <= delivery["next_attempt_at"] <= release_at(after, urgent=False)
        assert await pool.fetchval("SELECT count(*) FROM domain_events WHERE dedupe_key = $1", f"test:{kind}") == 1
    for kind, payload in EVENT_ONLY.items():
        if kind == "disbursement.completed":  # no person's: the system's event
            await _publish(pool, kind, None, payload, f"test:{kind}")
            assert await pool.fetchval("SELECT payload FROM system_events WHERE kind = $1", kind) == payload
            continue
        await _publish(pool, kind, person_id, payload, f"test:{kind}")
        event = await pool.fetchrow("SELECT person_id, payload FROM domain_events WHERE kind = $1", kind)
        assert event is not None
        assert (event["person_id"], event["payload"]) == (person_id, payload)
    # A kind with a template but no person: only the system's event.
    await _publish(pool, "certification.failed", None, {}, "test:nobody")
    await _publish(pool, "certification.failed", None, {}, "test:nobody")
    assert await pool.fetchval("SELECT count(*) FROM system_events WHERE dedupe_key = 'test:nobody'") == 1
    assert await pool.fetchval("SELECT count(*) FROM domain_events WHERE dedupe_key = 'test:nobody'") == 0
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE dedupe_key = 'test:nobody'") == 0
    assert sorted(n["kind"] for n in await _notices(pool, person_id)) == sorted(NOTIFIED)
    assert await pool.fetchval("SELECT count(*) FROM notifications") == len(NOTIFIED)

    # Each renders in the inbox from the params its use case wrote.
    r = await client.get(INBOX, headers=holder["headers"])
    assert r.status_code == 200, r.text
    shown = {i["kind"]: i for i in r.json()["items"]}
    assert {kind: item["title"] for kind, item in shown.items()} == {k: title for k, (_, title) in NOTIFIED.items()}
    assert "2027年11月23日" in shown["certification.passed"]["body"]
    assert "2026年10月" in shown["death.reversed"]["body"]
    assert r.json()["unread_count"] == len(NOTIFIED)

    # The same change published twice (a retried use case): one event, one notice, one delivery.
    counts = "SELECT (SELECT count(*) FROM domain_events), (SELECT count(*) FROM notifications), (SELECT count(*) FROM deliveries)"
    then = await pool.fetchrow(counts)
    await _publish(
        pool, "certification.passed", person_id, {"eligible_until": "2030-01-01"}, "test:certification.passed"
    )
    assert await pool.fetchrow(counts) == then
    params = await pool.fetchval("SELECT params FROM notifications WHERE dedupe_key = 'test:certification.passed'")
    assert params["eligible_until"] == "2027-11-23"  # the first write stands

    # Someone with no phone registered is sent an SMS, and nothing is pushed.
    await _publish(pool, "certification.failed", no_phone, {}, "test:sms")
    (notice,) = await _notices(pool, no_phone)
    deliveries = await _deliveries(pool, notice["id"])
    assert [(d["channel"], d["device_id"]) for d in deliveries] == [("sms", None)]
    await _publish(pool, "certification.failed", no_phone, {}, "test:sms")
    assert len(await _deliveries(pool, notice["id"])) == 1


async def test_a_removed_phone_is_not_pushed_to(client: Any, pool: asyncpg.Pool, holder: dict[str, Any]) -> None:
    person_id = await person_id_of(pool, holder["person"].phone)
    kept = await _register(client, holder["headers"], "fcm-token-kept")
    removed = await _register(client, holder["headers"], "fcm-token-removed")
    r = await client.delete(f"{DEVICES}/{removed['id']}", headers=holder["headers"])
    assert r.status_code == 204
    await _publish(pool, "certification.needs_review", person_id, {}, "test:review")
    (notice,) = await _notices(pool, person_id)
    assert [(d["channel"], str(d["device_id"])) for d in await _deliveries(pool, notice["id"])] == [
        ("push", kept["id"])
    ]


async def test_a_phone_is_not_registered_under_a_sign_in_that_ended(
    client: Any, pool: asyncpg.Pool, services: Services, holder: dict[str, Any]
) -> None:
    # The session is a coordinator table on a cluster: no foreign key holds a device to it, the
    # registration checks it, under a lock that a logout waits for.
    person_id = await person_id_of(pool, holder["person"].phone)
    device = await _register(client, holder["headers"], "fcm-token-session")
    session_id = await pool.fetchval(
        "SELECT session_id FROM devices WHERE person_id = $1 AND id = $2", person_id, uuid.UUID(device["id"])
    )
    assert session_id is not None
    assert (await client.post("/v1/auth/logout", headers=holder["headers"])).status_code == 204
    assert await pool.fetchval("SELECT deactivated_reason FROM devices WHERE person_id = $1", person_id) == "logout"
    with pytest.raises(Unauthorized):
        await services.notifications.register_device(person_id, session_id, "fcm-token-late", "android", "en", "3.2.1")
    with pytest.raises(Unauthorized):
        await services.notifications.register_device(
            person_id, uuid.uuid4(), "fcm-token-late", "android", "en", "3.2.1"
        )
    assert await pool.fetchval("SELECT count(*) FROM devices WHERE push_token = 'fcm-token-late'") == 0
    assert await pool.fetchval("SELECT count(*) FROM push_tokens WHERE push_token = 'fcm-token-late'") == 0


# -- the reminder scan -------------------------------------------------------------------------------
async def _reminders(pool: asyncpg.Pool) -> list[tuple[uuid.UUID, int, str, int]]:
    rows = await pool.fetch(
        """SELECT person_id, (params->>'stage')::int AS stage, params->>'due_date' AS due,
                  (params->>'days_left')::int AS left
           FROM notifications WHERE kind = 'certification.due'"""
    )
    return sorted((r["person_id"], r["stage"], r["due"], r["left"]) for r in rows)


async def test_certification_reminders_at_30_7_and_1_days_once_each(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    today = date(2027, 3, 16)  # 15 April is 30 days away: no withheld-payment warning on these days
    in7, in30, in1, in45, dead, stopped = [p.id for p in await import_pensioners(importer, pool, tmp_path, 6)]
    for person, days in ((in7, 7), (in30, 30), (in1, 1), (in45, 45), (dead, 7), (stopped, 7)):
        await _certify_until(pool, person, today + timedelta(days=days))
    await pool.execute(
        "UPDATE persons SET vital_status = 'deceased', date_of_death = $2 WHERE id = $1", dead, date(2027, 2, 1)
    )
    await pool.execute("UPDATE pension_entitlements SET status = 'stopped' WHERE person_id = $1", stopped)

    counts, before, after = await _timed(services.notifications.remind(today))
    assert counts == {"reminders": 3, "warnings": 0}
    for _ in range(2):
        assert await services.notifications.remind(today) == {"reminders": 0, "warnings": 0}

    def due(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    expected = sorted([(in7, 7, due(7), 7), (in30, 30, due(30), 30), (in1, 1, due(1), 1)])
    assert await _reminders(pool) == expected
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 3
    # Not urgent: shown now, sent outside quiet hours; by SMS, as none of them has a phone registered.
    for row in await pool.fetch(
        """SELECT n.urgent, n.shown_from, d.channel, d.next_attempt_at
           FROM notifications n JOIN deliveries d ON d.notification_id = n.id"""
    ):
        assert (row["urgent"], row["channel"]) == (False, "sms")
        assert before <= row["shown_from"] <= after
        assert release_at(before, urgent=False) <= row["next_attempt_at"] <= release_at(after, urgent=False)
    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 3

    # Five days on, the 7-day person is still in the 7-day window: reminded already.
    assert await services.notifications.remind(today + timedelta(days=5)) == {"reminders": 0, "warnings": 0}
    # Six days on, one day is left: the last reminder.
    assert await services.notifications.remind(today + timedelta(days=6)) == {"reminders": 1, "warnings": 0}
    assert await _reminders(pool) == sorted([*expected, (in7, 1, due(7), 1)])
    assert await services.notifications.remind(today + timedelta(days=6)) == {"reminders": 0, "warnings": 0}


async def test_a_payment_that_will_be_withheld_is_warned_of_once_within_14_days(
    services: Services, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    pay_on = date(2026, 12, 15)
    after_pay, on_pay, lapsing, never, dead, stopped = [
        p.id for p in await import_pensioners(importer, pool, tmp_path, 6)
    ]
    await _certify_until(pool, after_pay, date(2027, 6, 1))
    await _certify_until(pool, on_pay, pay_on)  # certified through the pay date itself: paid
    await _certify_until(pool, lapsing, pay_on - timedelta(days=1))
    await pool.execute(
        "UPDATE persons SET vital_status = 'deceased', date_of_death = $2 WHERE id = $1", dead, date(2026, 10, 1)
    )
    await pool.execute("UPDATE pension_entitlements SET status = 'stopped' WHERE person_id = $1", stopped)
    warnings = "SELECT person_id, params FROM notifications WHERE kind = 'payment.will_be_withheld' ORDER BY person_id"

    # 20 days before the pay date: too early to warn.
    assert (await services.notifications.remind(pay_on - timedelta(days=20)))["warnings"] == 0
    assert await pool.fetch(warnings) == []

    ten_days_before = pay_on - timedelta(days=10)
    assert (await services.notifications.remind(ten_days_before))["warnings"] == 2
    for day in (ten_days_before, ten_days_before, pay_on - timedelta(days=1)):
        assert (await services.notifications.remind(day))["warnings"] == 0
    rows = await pool.fetch(warnings)
    assert {r["person_id"]: r["params"] for r in rows} == {
        lapsing: {
            "period": "2026-12-01",
            "pay_date": "2026-12-15",
            "amount_fen": 350000,
            "reason": "certification_expired",
        },
        never: {"period": "2026-12-01", "pay_date": "2026-12-15", "amount_fen": 350000, "reason": "not_certified"},
    }
    keys = await pool.fetch("SELECT dedupe_key FROM notifications WHERE kind = 'payment.will_be_withheld'")
    assert sorted(k["dedupe_key"] for k in keys) == sorted(
        f"payment.will_be_withheld:{p}:2026-12-01" for p in (lapsing, never)
    )


# -- a run's payment notices -----------------------------------------------------------------------
NIGHT = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)  # 02:00 on 23 November in China
MORNING = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 08:00 there


class _AtNight(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls.fromtimestamp(NIGHT.timestamp(), tz)


async def test_a_completed_run_tells_each_person_of_their_payment_once(
    client: Any,
    services: Services,
    pool: asyncpg.Pool,
    importer: Any,
    holder: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paid = await person_id_of(pool, holder["person"].phone)  # certified for a year by the fixture's face check
    (withheld,) = [p.id for p in await import_pensioners(importer, pool, tmp_path, 1)]
    account = await pool.fetchval("SELECT bank_account_masked FROM pension_entitlements WHERE person_id = $1", paid)

    run = await services.disbursements.run(date(2026, 10, 1), "system:test")  # paid on 15 October: past
    assert (run["state"], run["paid_count"], run["withheld_count"]) == ("completed", 1, 1)
    assert await pool.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", ANNOUNCE_RUN_JOB) == 0
    # Told once two administrators have approved and released it (payments.disbursement.approval).
    await services.disbursements.approve(run["id"], "admin:checker")
    await services.disbursements.release(run["id"], "admin:payer")
    jobs = await pool.fetch("SELECT entrypoint, payload FROM pgqueuer WHERE entrypoint = $1", ANNOUNCE_RUN_JOB)
    assert [bytes(j["payload"]).decode() for j in jobs] == [str(run["id"])]
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0  # the job writes them

    # Announced at 02:00 in China (the clock the service reads, fixed): whatever the time of this run.
    monkeypatch.setattr("notifications.service.datetime", _AtNight)
    assert await services.notifications.announce_run(run["id"]) == 2
    monkeypatch.undo()
    assert await services.notifications.announce_run(run["id"]) == 0
    assert await services.notifications.announce_run(run["id"], batch=1) == 0

    (paid_notice,) = await _notices(pool, paid)
    assert (paid_notice["kind"], paid_notice["urgent"]) == ("payment.paid", False)
    params = paid_notice["params"]
    assert (params["amount_fen"], params["period"], params["pay_date"]) == (350000, "2026-10-01", "2026-10-15")
    assert params["account_masked"] == account
    assert "reason" not in params
    (withheld_notice,) = await _notices(pool, withheld)
    assert withheld_notice["kind"] == "payment.withheld"
    assert {k: withheld_notice["params"][k] for k in ("amount_fen", "period", "reason")} == {
        "amount_fen": 350000,
        "period": "2026-10-01",
        "reason": "not_certified",
    }
    assert "account_masked" not in withheld_notice["params"]
    payment_ids = {r["person_id"]: str(r["id"]) for r in await pool.fetch("SELECT id, person_id FROM pension_payments")}
    assert paid_notice["dedupe_key"] == f"payment:{payment_ids[paid]}"
    assert withheld_notice["params"]["payment_id"] == payment_ids[withheld]

    # The pay date is past: the notice is in the inbox at once; its SMS waits for 08:00.
    for notice in (paid_notice, withheld_notice):
        assert notice["shown_from"] == NIGHT
        (delivery,) = await _deliveries(pool, notice["id"])
        assert (delivery["channel"], delivery["next_attempt_at"]) == ("sms", MORNING)
    r = await client.get(INBOX, headers={**holder["headers"], "Accept-Language": "en"})
    (item,) = r.json()["items"]
    assert item["kind"] == "payment.paid"
    assert item["body"] == (
        f"Your October 2026 pension of CNY 3,500.00 was paid into your account {account} on 15 October 2026."
    )


async def test_a_payment_notice_is_not_shown_before_its_pay_date(
    client: Any, services: Services, pool: asyncpg.Pool, holder: dict[str, Any]
) -> None:
    person_id = await person_id_of(pool, holder["person"].phone)
    device = await _register(client, holder["headers"], "fcm-token-pay")
    period = (datetime.now(UTC).date().replace(day=1) + timedelta(days=62)).replace(day=1)  # always a future pay date
    run = await services.disbursements.run(period, "system:test")
    assert (run["state"], run["paid_count"]) == ("completed", 1)

    assert await services.notifications.announce_run(run["id"]) == 1
    (notice,) = await _notices(pool, person_id)
    nine = pay_day_release(run["pay_date"], datetime.now(UTC))
    assert nine > datetime.now(UTC)
    assert (notice["kind"], notice["shown_from"]) == ("payment.paid", nine)
    (delivery,) = await _deliveries(pool, notice["id"])
    assert (delivery["channel"], str(delivery["device_id"]), delivery["next_attempt_at"]) == (
        "push",
        device["id"],
        nine,
    )

    r = await client.get(INBOX, headers=holder["headers"])
    assert r.json() == {"items": [], "unread_count": 0, "next_cursor": None}
    r = await client.post(f"{INBOX}/{notice['id']}/read", headers=holder["headers"])
    assert r.status_code == 404
    assert problem_code(r) == "notification_not_found"


# -- dead letters: the guard ---------------------------------------------------------------------------
async def test_only_administrators_see_the_dead_letters(
    client: Any, operator_headers: dict[str, str], admin_headers: dict[str, str], cardholder: dict[str, Any]
) -> None:
    for headers in (operator_headers, cardholder["headers"]):
        r = await client.get("/v1/admin/notifications", headers=headers)
        assert r.status_code == 403
        assert problem_code(r) == "forbidden"
        r = await client.post(f"/v1/admin/notifications/{uuid.uuid4()}/retry", headers=headers)
        assert r.status_code == 403
    assert (await client.get("/v1/admin/notifications")).status_code == 401

    r = await client.get("/v1/admin/notifications", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}
    r = await client.get("/v1/admin/notifications", params={"state": "lost"}, headers=admin_headers)
    assert r.status_code == 400


async def test_the_worker_runs_a_requested_disbursement_then_its_notices(
    services: Services, settings: Settings, pool: asyncpg.Pool, importer: Any, tmp_path: Path
) -> None:
    """The jobs as `socialcard worker` runs them: the run's job, then (once the run is approved and
    released) its announcement."""
    paid, withheld = await import_pensioners(importer, pool, tmp_path, 2)
    await _certify_until(pool, paid.id, date.today() + timedelta(days=200))

    run = await services.disbursements.request(date(2026, 9, 1), "admin:test")
    await asyncio.wait_for(run_worker(settings, drain=True), timeout=120)

    assert (await services.disbursements.view(run["id"]))["state"] == "completed"
    await services.disbursements.approve(run["id"], "admin:checker")
    await services.disbursements.release(run["id"], "admin:test")
    await asyncio.wait_for(run_worker(settings, drain=True), timeout=120)
    kinds = sorted((r["person_id"], r["kind"]) for r in await pool.fetch("SELECT person_id, kind FROM notifications"))
    assert kinds == sorted([(paid.id, "payment.paid"), (withheld.id, "payment.withheld")])  # each once
    assert await pool.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", ANNOUNCE_RUN_JOB) == 0
