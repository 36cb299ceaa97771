"""The dispatchers on the real database, sending through the real firebase-admin SDK to the local
FCM server each test starts: batching, dead tokens, Retry-After, dead letters, SMS instead of push,
and a dispatcher killed between sending and recording."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from app.services import Services
from infra.config import Settings, settings_env
from infra.db import unit_of_work
from notifications.dispatcher import Dispatcher
from notifications.outbox import publish_event
from notifications.push import push_channel
from tests.doubles.fcm_server import Fault, FcmServer, Rule
from tests.factories import Pensioner, import_pensioners


@pytest.fixture
def fcm_settings(settings: Settings, fcm: FcmServer) -> Settings:
    return msgspec.structs.replace(
        settings, fcm_url=fcm.url, fcm_project_id="socialcard-test", notify_retry_s=0, notify_max_attempts=3
    )


@pytest.fixture
async def dispatcher(fcm_settings: Settings, services: Services) -> AsyncIterator[Dispatcher]:
    push = push_channel(fcm_settings)
    yield Dispatcher(services.pool, fcm_settings, push, services.sms)
    await push.aclose()


async def device(services: Services, person: Pensioner, token: str, locale: str = "zh-CN") -> uuid.UUID:
    row = await services.notifications.register_device(person.id, None, token, "android", locale, "3.2.1")
    device_id: uuid.UUID = row["id"]
    return device_id


async def notify(pool: asyncpg.Pool, person: Pensioner, key: str | None = None) -> uuid.UUID:
    """A card-loss notice (urgent: due now, whatever the hour the test runs at)."""
    key = key or f"test:{uuid.uuid4()}"
    async with unit_of_work(pool) as uow:
        await publish_event(uow, "card.reported_lost", person.id, {"card_masked": "1000****0001"}, key)
    notice: uuid.UUID = await pool.fetchval("SELECT id FROM notifications WHERE dedupe_key = $1", key)
    return notice


async def deliveries(pool: asyncpg.Pool, notice: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT d.*, v.push_token FROM deliveries d
           LEFT JOIN devices v ON v.person_id = d.person_id AND v.id = d.device_id
           WHERE notification_id = $1 ORDER BY channel, v.push_token""",
        notice,
    )


def sent_notices(fcm: FcmServer) -> collections.Counter[str]:
    return collections.Counter(r.message["data"]["notification_id"] for r in fcm.received)


async def test_a_thousand_notices_go_out_in_claims_of_500_each_once(
    services: Services, importer: Any, dispatcher: Dispatcher, fcm: FcmServer, tmp_path: Path
) -> None:
    people = await import_pensioners(importer, services.pool, tmp_path, 7)
    for n, person in enumerate(people):
        await device(services, person, f"token-{n}")
    notices = [await notify(services.pool, people[n % 7]) for n in range(1001)]

    assert [await dispatcher.dispatch("push") for _ in range(4)] == [500, 500, 1, 0]

    assert sent_notices(fcm) == collections.Counter({str(n): 1 for n in notices})
    assert {r.token for r in fcm.received} == {f"token-{n}" for n in range(7)}
    states = await services.pool.fetch("SELECT state, count(*) FROM deliveries GROUP BY state")
    assert {r["state"]: r["count"] for r in states} == {"sent": 1001}
    message = fcm.received[0].message
    assert message["android"]["priority"] == "high"  # a card-loss notice is urgent
    assert message["notification"]["title"]


async def test_dispatchers_at_once_send_each_notice_once(
    services: Services, importer: Any, fcm_settings: Settings, fcm: FcmServer, tmp_path: Path
) -> None:
    # Each claims by UPDATE, not SELECT … FOR UPDATE SKIP LOCKED (which Citus refuses across shards):
    # rows two claims both found go to the one that wrote them first.
    people = await import_pensioners(importer, services.pool, tmp_path, 7)
    for n, person in enumerate(people):
        await device(services, person, f"token-{n}")
    notices = [await notify(services.pool, people[n % 7]) for n in range(600)]
    pushes = [push_channel(fcm_settings) for _ in range(3)]
    try:
        dispatchers = [Dispatcher(services.pool, fcm_settings, p, services.sms, push_batch=40) for p in pushes]
        handled = await asyncio.gather(*(d.run("push", window_s=1.0, poll_s=0.05) for d in dispatchers))
    finally:
        for push in pushes:
            await push.aclose()
    assert sum(handled) == 600
    assert sent_notices(fcm) == collections.Counter({str(n): 1 for n in notices})
    assert await services.pool.fetchval("SELECT count(*) FROM deliveries WHERE state = 'sent' AND attempts = 1") == 600


async def test_a_push_pending_when_its_token_moved_to_someone_else_goes_by_sms(
    services: Services, importer: Any, dispatcher: Dispatcher, fcm: FcmServer, tmp_path: Path
) -> None:
    first, second = await import_pensioners(importer, services.pool, tmp_path, 2)
    await device(services, first, "shared-phone")
    notice = await notify(services.pool, first)
    moved = await device(services, second, "shared-phone")  # the phone signed in by someone else

    assert await dispatcher.dispatch("push") == 1
    assert len(fcm.received) == 0  # the first person's notice does not reach the second's phone
    push, sms = await deliveries(services.pool, notice)
    assert (push["channel"], push["device_id"], push["state"]) == ("push", moved, "cancelled")
    assert (sms["channel"], sms["state"]) == ("sms", "pending")
    owner = await services.pool.fetchrow(
        "SELECT person_id, device_id FROM push_tokens WHERE push_token = 'shared-phone'"
    )
    assert owner is not None
    assert (owner["person_id"], owner["device_id"]) == (second.id, moved)


async def test_dead_tokens_are_deactivated_and_a_person_left_without_a_device_gets_the_sms(
    services: Services, importer: Any, dispatcher: Dispatcher, fcm: FcmServer, tmp_path: Path
) -> None:
    two_phones, one_phone, bad_token, bad_field = await import_pensioners(importer, services.pool, tmp_path, 4)
    fcm.fail("gone-a", Rule(Fault.UNREGISTERED))
    fcm.fail("gone-b", Rule(Fault.SENDER_ID_MISMATCH))
    fcm.fail("bad-token", Rule(Fault.INVALID_TOKEN))
    fcm.fail("bad-field", Rule(Fault.INVALID_FIELD))
    await device(services, two_phones, "gone-a")
    await device(services, two_phones, "fine-a")
    await device(services, one_phone, "gone-b")
    await device(services, bad_token, "bad-token")
    await device(services, bad_field, "bad-field")
    notices = [await notify(services.pool, p) for p in (two_phones, one_phone, bad_token, bad_field)]

    assert await dispatcher.dispatch("push") == 5
    devices = {
        r["push_token"]: r["deactivated_reason"]
        for r in await services.pool.fetch("SELECT push_token, deactivated_reason FROM devices")
    }
    # UNREGISTERED and SENDER_ID_MISMATCH kill a token; INVALID_ARGUMENT only when it names the token.
    assert devices == {
        "gone-a": "UNREGISTERED",
        "fine-a": None,
        "gone-b": "SENDER_ID_MISMATCH",
        "bad-token": "INVALID_ARGUMENT:message.token",
        "bad-field": None,
    }
    first, second, third, fourth = [await deliveries(services.pool, n) for n in notices]
    assert [(d["channel"], d["push_token"], d["state"]) for d in first] == [
        ("push", "fine-a", "sent"),
        ("push", "gone-a", "cancelled"),
    ]
    assert [(d["channel"], d["state"]) for d in second] == [("push", "cancelled"), ("sms", "pending")]
    assert [(d["channel"], d["state"]) for d in third] == [("push", "cancelled"), ("sms", "pending")]
    # A message FCM refuses for another field is not the token's fault: dead letter, device kept.
    assert [(d["channel"], d["state"], d["last_error"]) for d in fourth] == [
        ("push", "dead", "INVALID_ARGUMENT:message.android.ttl")
    ]

    assert await dispatcher.dispatch("sms") == 2
    texts = await services.pool.fetch("SELECT phone, body FROM dev_sms_messages WHERE body LIKE '【社保服务】%'")
    assert sorted(t["phone"] for t in texts) == sorted([one_phone.phone, bad_token.phone])
    assert all("1000****0001" in t["body"] for t in texts)

    # The next notice to a person with no device left goes straight to SMS; the push server hears nothing.
    received = fcm.requests
    later = await deliveries(services.pool, await notify(services.pool, one_phone))
    assert [(d["channel"], d["state"]) for d in later] == [("sms", "pending")]
    assert await dispatcher.dispatch("push") == 0
    assert fcm.requests == received


async def test_a_person_with_no_device_gets_the_sms_instead_of_the_push(
    services: Services, importer: Any, dispatcher: Dispatcher, fcm: FcmServer, tmp_path: Path
) -> None:
    (person,) = await import_pensioners(importer, services.pool, tmp_path, 1, locale="en")
    notice = await notify(services.pool, person)
    assert [(d["channel"], d["device_id"]) for d in await deliveries(services.pool, notice)] == [("sms", None)]

    assert await dispatcher.dispatch("push") == 0
    assert await dispatcher.dispatch("sms") == 1
    assert fcm.requests == 0
    body = await services.pool.fetchval("SELECT body FROM dev_sms_messages WHERE phone = $1", person.phone)
    assert body.startswith("Social Security: ")  # the person's locale
    assert "1000****0001" in body
    assert [d["state"] for d in await deliveries(services.pool, notice)] == ["sent"]


async def test_429_is_tried_again_not_before_retry_after(
    services: Services, importer: Any, dispatcher: Dispatcher, fcm: FcmServer, tmp_path: Path
) -> None:
    (person,) = await import_pensioners(importer, services.pool, tmp_path, 1)
    await device(services, person, "busy-1")
    fcm.fail("busy-1", Rule(Fault.QUOTA_EXCEEDED, retry_after=2, times=1))
    notice = await notify(services.pool, person)

    assert await dispatcher.dispatch("push") == 1
    (waiting,) = await deliveries(services.pool, notice)
    assert (waiting["state"], waiting["attempts"], waiting["last_error"]) == ("pending", 1, "QUOTA_EXCEEDED")
    wait_s = await services.pool.fetchval(
        "SELECT extract(epoch FROM next_attempt_at - now()) FROM deliveries WHERE id = $1", waiting["id"]
    )
    assert 1.0 < wait_s <= 2.0  # Retry-After, though the backoff alone (NOTIFY_RETRY_S=0) would be at once
    assert await dispatcher.dispatch("push") == 0

    await asyncio.sleep(float(wait_s) + 0.2)
    assert await dispatcher.dispatch("push") == 1
    (sent,) = await deliveries(services.pool, notice)
    assert (sent["state"], sent["attempts"]) == ("sent", 2)
    assert [r.status for r in fcm.received] == [429, 200]


async def test_dead_letter_after_the_last_attempt_and_an_administrator_retries_it(
    services: Services,
    importer: Any,
    dispatcher: Dispatcher,
    fcm: FcmServer,
    tmp_path: Path,
    client: Any,
    admin_headers: dict[str, str],
    operator_headers: dict[str, str],
) -> None:
    (person,) = await import_pensioners(importer, services.pool, tmp_path, 1)
    await device(services, person, "throttled-1")
    fcm.fail("throttled-1", Rule(Fault.QUOTA_EXCEEDED, times=3))
    notice = await notify(services.pool, person)

    for _ in range(3):  # NOTIFY_MAX_ATTEMPTS=3, no backoff
        assert await dispatcher.dispatch("push") == 1
    assert await dispatcher.dispatch("push") == 0
    (dead,) = await deliveries(services.pool, notice)
    assert (dead["state"], dead["attempts"], dead["last_error"]) == ("dead", 3, "QUOTA_EXCEEDED")
    assert fcm.requests_for("throttled-1") == 3

    assert (await client.get("/v1/admin/notifications?state=dead", headers=operator_headers)).status_code == 403
    r = await client.get("/v1/admin/notifications?state=dead", headers=admin_headers)
    assert r.status_code == 200, r.text
    (listed,) = r.json()["items"]
    assert (listed["id"], listed["kind"], listed["channel"]) == (str(dead["id"]), "card.reported_lost", "push")
    assert person.national_id not in r.text

    r = await client.post(f"/v1/admin/notifications/{dead['id']}/retry", headers=admin_headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["attempts"]) == ("pending", 0)
    again = await client.post(f"/v1/admin/notifications/{dead['id']}/retry", headers=admin_headers)
    assert (again.status_code, again.json()["code"]) == (409, "delivery_not_dead")
    missing = await client.post(f"/v1/admin/notifications/{uuid.uuid4()}/retry", headers=admin_headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "delivery_not_found")
    audit = await services.pool.fetchrow(
        "SELECT actor, subject, details FROM audit_log WHERE action = 'notification.retried'"
    )
    assert audit is not None
    assert (audit["subject"], audit["actor"].split(":")[0]) == (f"delivery:{dead['id']}", "admin")
    admin_id = await services.pool.fetchval("SELECT id FROM operators WHERE username = 'admin1'")
    assert audit["actor"] == f"admin:{admin_id}"
    assert audit["details"] == {"channel": "push", "last_error": "QUOTA_EXCEEDED"}

    assert await dispatcher.dispatch("push") == 1
    (sent,) = await deliveries(services.pool, notice)
    assert sent["state"] == "sent"
    assert fcm.requests_for("throttled-1") == 4
    assert (await client.get("/v1/admin/notifications", headers=admin_headers)).json()["items"] == []


async def _dispatch_in_child(settings: Settings) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "notify",
        "dispatch",
        "--channel",
        "push",
        env={**os.environ, **settings_env(settings)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_dispatcher_killed_between_sending_and_recording_sends_again_and_the_inbox_shows_it_once(
    services: Services, importer: Any, fcm_settings: Settings, fcm: FcmServer, tmp_path: Path
) -> None:
    settings = msgspec.structs.replace(fcm_settings, notify_lease_s=2)
    (person,) = await import_pensioners(importer, services.pool, tmp_path, 1)
    await device(services, person, "slow-1")
    # The server takes the message, then holds its answer: the child has sent and not yet recorded.
    fcm.fail("slow-1", Rule(Fault.HOLD, times=1))
    notice = await notify(services.pool, person)

    child = await _dispatch_in_child(settings)
    try:
        async with asyncio.timeout(30):
            while fcm.requests_for("slow-1") == 0:  # noqa: ASYNC110 (the server counts; nothing to await)
                await asyncio.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    (claimed,) = await deliveries(services.pool, notice)
    assert (claimed["state"], claimed["attempts"]) == ("pending", 1)  # sent, never recorded

    # Another dispatcher takes it once the killed one's lease has run out, and sends it again.
    push = push_channel(settings)
    try:
        again = Dispatcher(services.pool, settings, push, services.sms)
        assert await again.dispatch("push") == 0  # still leased
        await asyncio.sleep(2.2)
        assert await again.dispatch("push") == 1
    finally:
        await push.aclose()
    (sent,) = await deliveries(services.pool, notice)
    assert (sent["state"], sent["attempts"]) == ("sent", 2)
    assert fcm.requests_for("slow-1") == 2
    inbox = await services.notifications.inbox(person.id, None, 10)
    assert [row["id"] for row in inbox[0]] == [notice]
