"""The FCM channel: the real firebase-admin SDK against the local FCM server, started by each test."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from firebase_admin import messaging

from infra.config import Settings, load_settings
from notifications.push import _CONNECTIONS, FcmPush, LogPush, PushMessage, PushOutcome, push_channel
from tests.conftest import LocalTls
from tests.doubles.fcm_server import Fault, FcmServer, Rule

KEY_NAMES = ("TOKEN_SIGNING_KEY", "QR_SIGNING_KEY", "DATA_ENCRYPTION_KEY", "LOOKUP_HASH_KEY", "AUDIT_CHAIN_KEY")


def settings_for(tmp_path: Path, **fcm: str) -> Settings:
    return load_settings(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "S3_ENDPOINT_URL": "http://127.0.0.1:1",
            "VAR_DIR": str(tmp_path),
            "SOCIALCARD_ENV": "test",
            **{name: base64.b64encode(bytes([i]) * 32).decode() for i, name in enumerate(KEY_NAMES, 1)},
            **fcm,
        }
    )


def message(token: str, **fields: Any) -> PushMessage:
    return PushMessage(token=token, title="养老金已发放", body="您的 5 月养老金已到账。", **fields)


@pytest.fixture
async def push(fcm: FcmServer, tmp_path: Path) -> AsyncIterator[FcmPush]:
    channel = push_channel(settings_for(tmp_path, FCM_URL=fcm.url, FCM_PROJECT_ID="socialcard-test"))
    assert isinstance(channel, FcmPush)
    yield channel
    await channel.aclose()


async def test_a_big_batch_goes_out_in_calls_of_500(
    push: FcmPush, fcm: FcmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    send_each_async = messaging.send_each_async

    async def counted(messages: list[messaging.Message], dry_run: bool = False, app: Any = None) -> Any:
        calls.append(len(messages))
        return await send_each_async(messages, dry_run, app)

    monkeypatch.setattr(messaging, "send_each_async", counted)
    tokens = [f"device-{i:05d}" for i in range(1200)]
    outcomes = await push.send([message(t, data={"kind": "payment", "n": str(i)}) for i, t in enumerate(tokens)])

    assert outcomes == [PushOutcome("delivered")] * 1200
    assert calls == [500, 500, 200]
    assert fcm.requests == 1200
    assert sorted(r.token for r in fcm.received if r.token) == tokens
    # HTTP/1.1 keep-alive: the fixed set of connections, each opened once (the SDK starts 500 requests at once)
    assert fcm.connections == _CONNECTIONS == 64
    first = next(r.message for r in fcm.received if r.token == "device-00007")
    assert first["data"] == {"kind": "payment", "n": "7"}
    assert first["notification"] == {"title": "养老金已发放", "body": "您的 5 月养老金已到账。"}


async def test_urgency_and_collapse_key_reach_android_and_apns(push: FcmPush, fcm: FcmServer) -> None:
    await push.send([message("urgent-1", urgent=True, collapse_key="n-42"), message("quiet-1")])

    sent = {r.token: r.message for r in fcm.received}
    assert sent["urgent-1"]["android"] == {"priority": "high", "collapse_key": "n-42", "notification": {"tag": "n-42"}}
    assert sent["urgent-1"]["apns"] == {"headers": {"apns-priority": "10", "apns-collapse-id": "n-42"}}
    assert sent["quiet-1"]["android"]["priority"] == "normal"
    assert sent["quiet-1"]["apns"] == {"headers": {"apns-priority": "5"}}


async def test_dead_tokens_and_bad_messages(push: FcmPush, fcm: FcmServer) -> None:
    fcm.fail("unregistered", Rule(Fault.UNREGISTERED))
    fcm.fail("other-sender-", Rule(Fault.SENDER_ID_MISMATCH), prefix=True)
    fcm.fail("malformed", Rule(Fault.INVALID_TOKEN))
    fcm.fail("bad-ttl", Rule(Fault.INVALID_FIELD))
    tokens = ["ok-1", "unregistered", "other-sender-7", "malformed", "bad-ttl", "ok-2"]

    outcomes = await push.send([message(t) for t in tokens])

    assert outcomes == [
        PushOutcome("delivered"),
        PushOutcome("token_gone", "UNREGISTERED"),
        PushOutcome("token_gone", "SENDER_ID_MISMATCH"),
        PushOutcome("token_gone", "INVALID_ARGUMENT:message.token"),
        PushOutcome("failed", "INVALID_ARGUMENT:message.android.ttl"),
        PushOutcome("delivered"),
    ]
    assert fcm.requests == 6  # permanent errors are not retried by the SDK


async def test_quota_exceeded_is_retried_later_not_by_the_sdk(push: FcmPush, fcm: FcmServer) -> None:
    fcm.fail("throttled", Rule(Fault.QUOTA_EXCEEDED, retry_after=7))

    assert await push.send([message("throttled")]) == [PushOutcome("retry", "QUOTA_EXCEEDED", 7.0)]
    assert fcm.requests_for("throttled") == 1


async def test_the_sdk_retries_unavailable_and_internal_four_times(push: FcmPush, fcm: FcmServer) -> None:
    fcm.fail("flaky", Rule(Fault.UNAVAILABLE, times=2))
    fcm.fail("down", Rule(Fault.UNAVAILABLE))
    fcm.fail("broken", Rule(Fault.INTERNAL))
    fcm.fail("outage-", Rule(Fault.UNAVAILABLE), prefix=True)
    outage = [f"outage-{i}" for i in range(60)]  # 240 answers retried: the SDK closes none of them

    started = time.monotonic()
    outcomes = await push.send([message("flaky"), message("down"), message("broken"), *map(message, outage)])

    assert outcomes == [
        PushOutcome("delivered"),
        PushOutcome("retry", "UNAVAILABLE"),
        PushOutcome("retry", "INTERNAL"),
        *[PushOutcome("retry", "UNAVAILABLE")] * len(outage),
    ]
    assert (fcm.requests_for("flaky"), fcm.requests_for("down"), fcm.requests_for("broken")) == (3, 5, 5)
    assert fcm.requests == 3 + 5 + 5 + 5 * len(outage)
    assert time.monotonic() - started >= 7  # the SDK's backoff before its 2nd..5th attempt: 0, 1, 2, 4 s


async def test_over_tls_as_to_fcm_itself(local_tls: LocalTls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path to FCM: https, HTTP/1.1 on keep-alive connections kept for the next batch (no OAuth: the server
    needs none)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(local_tls.ca_file))  # the client trusts the test certificate
    async with FcmServer(tls=local_tls.server) as fcm:
        fcm.fail("gone", Rule(Fault.UNREGISTERED))
        channel = push_channel(settings_for(tmp_path, FCM_URL=fcm.url, FCM_PROJECT_ID="p"))
        try:
            outcomes = await channel.send([message(f"here-{i}") for i in range(20)] + [message("gone")])
            again = await channel.send([message(f"again-{i}") for i in range(21)])
        finally:
            await channel.aclose()

    assert fcm.url.startswith("https://")
    assert outcomes == [PushOutcome("delivered")] * 20 + [PushOutcome("token_gone", "UNREGISTERED")]
    assert again == [PushOutcome("delivered")] * 21
    assert (fcm.requests, fcm.connections) == (42, 21)  # the 21 at once each on one, and the next 21 on the same


async def test_no_server_is_a_retry(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/projects/{{0}}/messages:send"
    channel = push_channel(settings_for(tmp_path, FCM_URL=url, FCM_PROJECT_ID="p"))
    try:
        assert await channel.send([message("anyone")]) == [PushOutcome("retry", "UNAVAILABLE")]
    finally:
        await channel.aclose()


async def test_each_channel_keeps_its_own_server(tmp_path: Path) -> None:
    default_url = "https://fcm.googleapis.com/v1/projects/{0}/messages:send"  # the SDK's own, not whatever is set now
    assert default_url == messaging._MessagingService.FCM_URL
    async with FcmServer() as first, FcmServer() as second:
        channels = [
            push_channel(settings_for(tmp_path, FCM_URL=server.url, FCM_PROJECT_ID="p")) for server in (first, second)
        ]
        try:
            await asyncio.gather(*(c.send([message(f"to-{i}")]) for i, c in enumerate(channels)))
        finally:
            for channel in channels:
                await channel.aclose()
        assert [r.token for r in first.received] == ["to-0"]
        assert [r.token for r in second.received] == ["to-1"]
    assert default_url == messaging._MessagingService.FCM_URL  # put back once each app has its own


async def test_log_channel_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_fcm(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the log channel must not call FCM")

    monkeypatch.setattr(messaging, "send_each_async", no_fcm)
    channel = push_channel(settings_for(tmp_path))
    assert isinstance(channel, LogPush)

    with caplog.at_level(logging.INFO, logger="notifications.push"):
        outcomes = await channel.send([message("abcdef-secret-token", data={"kind": "payment"})])

    assert outcomes == [PushOutcome("delivered")]
    [record] = caplog.records
    assert record.__dict__["token"] == "abcdef…"
    assert record.__dict__["data_keys"] == ["kind"]
    assert "secret-token" not in caplog.text


async def test_http1_clients_and_stats(fcm: FcmServer) -> None:
    fcm.fail("throttled", Rule(Fault.QUOTA_EXCEEDED, retry_after=3, times=1))
    send = fcm.url.format("p")
    async with httpx.AsyncClient() as client:  # HTTP/1.1, keep-alive
        first = await client.post(send, json={"message": {"token": "throttled"}})
        second = await client.post(send, json={"message": {"token": "throttled"}})
        stats = await client.get(send.split("/v1/")[0] + "/stats")

    assert (first.http_version, first.status_code, first.headers["retry-after"]) == ("HTTP/1.1", 429, "3")
    assert first.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    assert second.json() == {"name": "projects/p/messages/2"}
    assert stats.json() == {"requests": 2, "statuses": {"429": 1, "200": 1}, "connections": 1}


async def test_http2_clients(fcm: FcmServer) -> None:
    fcm.fail("gone", Rule(Fault.UNREGISTERED))
    send = fcm.url.format("p")
    async with httpx.AsyncClient(http1=False, http2=True) as client:  # prior knowledge, as FCM is HTTP/2
        answers = await asyncio.gather(*(client.post(send, json={"message": {"token": t}}) for t in ("a", "gone", "b")))

    assert [(a.http_version, a.status_code) for a in answers] == [("HTTP/2", 200), ("HTTP/2", 404), ("HTTP/2", 200)]
    assert answers[1].json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"
    assert fcm.connections == 1


@pytest.mark.parametrize("http2", [False, True])
async def test_latency_holds_answers_back(tmp_path: Path, http2: bool) -> None:
    async with FcmServer(latency=0.2) as fcm, httpx.AsyncClient(http1=not http2, http2=http2) as client:
        send = fcm.url.format("p")
        started = time.monotonic()
        answers = await asyncio.gather(*(client.post(send, json={"message": {"token": f"t{i}"}}) for i in range(20)))
        elapsed = time.monotonic() - started

    assert [a.status_code for a in answers] == [200] * 20
    assert 0.2 <= elapsed < 1.5  # held back, but concurrently
    assert fcm.requests == 20


async def test_server_in_its_own_process(tmp_path: Path) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.doubles.fcm_server",
        "--fail",
        "gone-*=UNREGISTERED",
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(server.stdout.readline(), 30))
        channel = push_channel(settings_for(tmp_path, FCM_URL=ready["fcm_url"], FCM_PROJECT_ID="bench"))
        try:
            outcomes = await channel.send([message("gone-1"), message("here-1")])
        finally:
            await channel.aclose()
        async with httpx.AsyncClient() as client:
            stats = (await client.get(ready["stats_url"])).json()
    finally:
        server.terminate()
        last = json.loads((await server.stdout.read()).splitlines()[-1])
        await server.wait()

    assert [o.state for o in outcomes] == ["token_gone", "delivered"]
    assert stats["requests"] == 2
    assert last == {"stopped": True, **stats}
