"""The push channel's HTTP/1.1 transport (`notifications.http1`) in an httpx client, against real local
servers: the FCM server, over TLS too, and bare servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from notifications import http1
from tests.conftest import LocalTls
from tests.doubles.fcm_server import Fault, FcmServer, Rule

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def client(connections: int = 8, tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=http1.Http1Transport(connections, tls or http1.tls_context()), timeout=timeout)


@contextlib.asynccontextmanager
async def bare_server(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that runs `answer` on each connection; yields its URL and a list growing by one per connection."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", accepted


def each_request(*answer: bytes) -> Answer:
    """A connection's handler writing `answer` (its parts a moment apart) for every request, until the client closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                for part in answer:
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.01)

    return handle


def once(*answer: bytes) -> Answer:
    """A connection's handler writing `answer` (its parts a moment apart) for the first request, then closing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for part in answer:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)

    return handle


async def test_one_connection_serves_one_request_after_another(fcm: FcmServer) -> None:
    send = fcm.url.format("p")
    async with client() as http:
        answers = [await http.post(send, json={"message": {"token": f"t{i}"}}) for i in range(3)]

    assert [(a.http_version, a.status_code) for a in answers] == [("HTTP/1.1", 200)] * 3
    assert answers[0].json() == {"name": "projects/p/messages/1"}
    assert [r.token for r in fcm.received] == ["t0", "t1", "t2"]
    assert (fcm.requests, fcm.connections) == (3, 1)


async def test_requests_at_once_share_the_connections_allowed() -> None:
    async with FcmServer(latency=0.05) as fcm, client(connections=4) as http:
        send = fcm.url.format("p")
        answers = await asyncio.gather(*(http.post(send, json={"message": {"token": f"t{i}"}}) for i in range(40)))

    assert {a.status_code for a in answers} == {200}
    assert (fcm.requests, fcm.connections) == (40, 4)


async def test_error_answers_keep_the_connection(fcm: FcmServer) -> None:
    fcm.fail("gone", Rule(Fault.UNREGISTERED))
    fcm.fail("busy", Rule(Fault.QUOTA_EXCEEDED, retry_after=3))
    send = fcm.url.format("p")
    async with client() as http:
        answers = [await http.post(send, json={"message": {"token": t}}) for t in ("gone", "busy", "fine")]

    assert [a.status_code for a in answers] == [404, 429, 200]
    assert answers[0].json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"
    assert answers[1].headers["retry-after"] == "3"
    assert fcm.connections == 1


async def test_tls_with_a_trusted_certificate(local_tls: LocalTls) -> None:
    trusted = ssl.create_default_context(cafile=local_tls.ca_file)
    trusted.set_alpn_protocols(["http/1.1"])
    async with FcmServer(tls=local_tls.server) as fcm, client(tls=trusted) as http:
        send = fcm.url.format("p")
        answers = await asyncio.gather(*(http.post(send, json={"message": {"token": f"t{i}"}}) for i in range(3)))
        again = await http.post(send, json={"message": {"token": "again"}})

    assert send.startswith("https://")
    assert [(a.http_version, a.status_code) for a in [*answers, again]] == [("HTTP/1.1", 200)] * 4
    assert (fcm.requests, fcm.connections) == (4, 3)


async def test_an_untrusted_certificate_is_refused(local_tls: LocalTls) -> None:
    async with FcmServer(tls=local_tls.server) as fcm, client(tls=ssl.create_default_context()) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.post(fcm.url.format("p"), json={"message": {"token": "t"}})
        assert fcm.requests == 0


async def test_a_slow_answer_is_a_read_timeout_and_its_connection_closed() -> None:
    closed = asyncio.Event()

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # until the client closes
        closed.set()

    async with bare_server(never_answers) as (url, _), client(timeout=0.2) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(url, json={"message": {"token": "t"}})
        assert time.monotonic() - started < 1.5
        await asyncio.wait_for(closed.wait(), 1.0)  # not left open for an answer nobody will read


async def test_a_silent_tls_server_is_a_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the ClientHello, never answers it

    async with bare_server(silent) as (url, _), client(timeout=0.3) as http:
        with pytest.raises(httpx.ConnectTimeout):
            await http.get(url.replace("http://", "https://"))


async def test_no_server_is_a_connect_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_no_free_connection_within_the_pool_timeout() -> None:
    async with FcmServer() as fcm, client(connections=1) as http:
        fcm.fail("held", Rule(Fault.HOLD))
        send = fcm.url.format("p")
        held = asyncio.create_task(http.post(send, json={"message": {"token": "held"}}))
        for _ in range(200):  # until the held request is in: the one connection is taken
            if fcm.requests:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(httpx.PoolTimeout):
            await http.post(send, json={"message": {"token": "waits"}}, timeout=httpx.Timeout(5.0, pool=0.2))
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held
        after = await http.post(send, json={"message": {"token": "after"}})

    assert after.status_code == 200
    assert fcm.connections == 2  # the cancelled request's connection is closed, not given to the next


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    keep_alive_yet_closed = once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    async with bare_server(keep_alive_yet_closed) as (url, accepted), client() as http:
        first = await http.get(url)
        await asyncio.sleep(0.2)  # the close reaches the idle connection
        second = await http.get(url)

    assert (first.text, second.text) == ("ok", "ok")
    assert accepted == [1, 2]


async def test_connection_close_and_bytes_nobody_asked_for_end_the_connection() -> None:
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    chatty = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"  # half a second answer

    for answer in (closing, chatty):
        async with bare_server(each_request(answer)) as (url, accepted), client() as http:
            texts = [(await http.get(url)).text for _ in range(2)]

        assert texts == ["ok", "ok"]
        assert accepted == [1, 2]


async def test_chunked_gzipped_and_close_delimited_answers_arrive_whole() -> None:
    packed = gzip.compress(b'{"name": "projects/p/messages/1"}')
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n",
        b"%x\r\n%s\r\n" % (10, packed[:10]),
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed) - 10, packed[10:]),
    )
    until_close = (b"HTTP/1.1 200 OK\r\n\r\n", b"the body ", b"ends with the connection")

    async with bare_server(each_request(*chunked)) as (url, accepted), client() as http:
        answers = [await http.get(url) for _ in range(2)]
    assert [a.json() for a in answers] == [{"name": "projects/p/messages/1"}] * 2
    assert accepted == [1]

    async with bare_server(once(*until_close)) as (url, accepted), client() as http:
        texts = [(await http.get(url)).text for _ in range(2)]
    assert texts == ["the body ends with the connection"] * 2
    assert accepted == [1, 2]


async def test_an_informational_answer_is_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with bare_server(each_request(answer)) as (url, accepted), client() as http:
        answers = [await http.get(url) for _ in range(2)]

    assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 2
    assert accepted == [1]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",), "closed the connection before answering"),
        ((b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n", b"x" * 3000), "longer than 2000 bytes"),
        ((b"HTTP/1.1 100 Continue\r\n\r\n",), "closed the connection before answering"),
        ((b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",), "cannot be decoded"),
        ((b"HTTP/1.1 2OO OK\r\n\r\n",), "a malformed answer"),
        ((b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",), "a malformed answer"),
    ],
    ids=["cut short", "too long", "no answer after a 1xx", "bad gzip", "malformed", "upgrade"],
)
async def test_a_bad_answer_is_a_protocol_error(
    answer: tuple[bytes, ...], why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "MAX_ANSWER", 2000)

    async def bad_then_fine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(accepted) == 1:
            await once(*answer)(reader, writer)
        else:
            await each_request(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")(reader, writer)

    async with bare_server(bad_then_fine) as (url, accepted), client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match=why):
            await http.get(url)
        after = await http.get(url)

    assert after.text == "ok"
    assert accepted == [1, 2]  # the connection that went wrong is not used again


async def test_what_the_push_channel_does_not_send_is_refused() -> None:
    transport = http1.Http1Transport(1, http1.tls_context())
    for request in (httpx.Request("HEAD", "http://127.0.0.1:9/"), httpx.Request("GET", "ftp://127.0.0.1:9/")):
        with pytest.raises(httpx.UnsupportedProtocol):
            await transport.handle_async_request(request)


async def test_no_earlier_answer_stands_in_for_a_missing_one() -> None:
    async def no_content_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no length, and none needed
        await reader.readuntil(b"\r\n\r\n")  # the second request, never answered

    async with bare_server(no_content_then_close) as (url, _), client() as http:
        assert (await http.get(url)).status_code == 204
        with pytest.raises(httpx.RemoteProtocolError, match="closed the connection before answering"):
            await http.get(url)


async def test_a_body_of_unknown_length_is_refused() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": {}}'

    async with (
        bare_server(each_request(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (url, _),
        client() as http,
    ):
        with pytest.raises(httpx.UnsupportedProtocol, match="known length"):
            await http.post(url, content=chunks())


async def test_closing_the_client_closes_a_connection_still_in_use_once_its_answer_is_in() -> None:
    asked, closed = asyncio.Event(), asyncio.Event()

    async def slow_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await asyncio.sleep(0.2)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await reader.read()  # until the client closes
        closed.set()

    async with bare_server(slow_then_wait) as (url, _):
        http = client()
        answer = asyncio.create_task(http.get(url))
        await asyncio.wait_for(asked.wait(), 2)
        await http.aclose()
        assert (await answer).text == "ok"
        await asyncio.wait_for(closed.wait(), 1.0)
