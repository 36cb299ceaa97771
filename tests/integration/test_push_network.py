"""The push channel's sockets (`notifications.network`): httpx on asyncio's own transports, against real
local servers: the FCM server over HTTP/1.1, HTTP/2 and TLS, and bare servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from notifications import network
from notifications.fcm_server import FcmServer
from tests.conftest import LocalTls

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def client(**options: Any) -> httpx.AsyncClient:
    timeout = options.pop("timeout", 5.0)
    return httpx.AsyncClient(transport=network.http_transport(**options), timeout=timeout)


def on_asyncio(response: httpx.Response) -> bool:
    return isinstance(response.extensions["network_stream"], network._Stream)


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


async def test_http1_keeps_one_connection(fcm: FcmServer) -> None:
    send = fcm.url.format("p")
    async with client() as http:
        answers = [await http.post(send, json={"message": {"token": f"t{i}"}}) for i in range(3)]

    assert [(a.http_version, a.status_code) for a in answers] == [("HTTP/1.1", 200)] * 3
    assert all(on_asyncio(a) for a in answers)
    assert (fcm.requests, fcm.connections) == (3, 1)


async def test_http2_by_prior_knowledge(fcm: FcmServer) -> None:
    send = fcm.url.format("p")
    async with client(http1=False, http2=True) as http:
        answers = await asyncio.gather(*(http.post(send, json={"message": {"token": f"t{i}"}}) for i in range(50)))

    assert {(a.http_version, a.status_code) for a in answers} == {("HTTP/2", 200)}
    assert all(on_asyncio(a) for a in answers)
    assert (fcm.requests, fcm.connections) == (50, 1)


async def test_tls_negotiates_http2(local_tls: LocalTls) -> None:
    trusted = ssl.create_default_context(cafile=local_tls.ca_file)
    async with FcmServer(tls=local_tls.server) as fcm, client(verify=trusted, http2=True) as http:
        send = fcm.url.format("p")
        answers = await asyncio.gather(*(http.post(send, json={"message": {"token": f"t{i}"}}) for i in range(20)))
        stream = answers[0].extensions["network_stream"]

        assert send.startswith("https://")
        assert {(a.http_version, a.status_code) for a in answers} == {("HTTP/2", 200)}
        assert stream.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", fcm.port)
        assert (fcm.requests, fcm.connections) == (20, 1)


async def test_an_untrusted_certificate_is_refused(local_tls: LocalTls) -> None:
    async with FcmServer(tls=local_tls.server) as fcm, client(verify=ssl.create_default_context()) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.post(fcm.url.format("p"), json={"message": {"token": "t"}})
        assert fcm.requests == 0


async def test_a_slow_answer_is_a_read_timeout() -> None:
    async with FcmServer(latency=2.0) as fcm, client(timeout=0.2) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(fcm.url.format("p"), json={"message": {"token": "t"}})
        assert time.monotonic() - started < 1.5


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


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive, yet the server closes
        await writer.drain()

    async with bare_server(once_then_close) as (url, accepted), client() as http:
        first = await http.get(url)
        await asyncio.sleep(0.2)  # the close reaches the idle connection
        second = await http.get(url)

    assert (first.text, second.text) == ("ok", "ok")
    assert accepted == [1, 2]


async def test_an_answer_cut_short_is_an_error() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async with bare_server(cut_short) as (url, _), client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)


async def test_a_large_answer_read_slowly_arrives_whole() -> None:
    body = bytes(range(256)) * (12 * 1024)  # 3 MiB: reading pauses above 256 KiB unread, and resumes

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # until the client closes
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()

    async def read_slowly(http: httpx.AsyncClient, url: str) -> bytes:
        async with http.stream("GET", url) as answer:
            await asyncio.sleep(0.2)  # the server writes all it can meanwhile
            unread = answer.extensions["network_stream"]._connection.received
            assert len(unread) <= 2 * network._HIGH_WATER  # a last read of at most 256 KiB past the mark
            return await answer.aread()

    async with bare_server(large) as (url, accepted), client() as http:
        answers = [await read_slowly(http, url) for _ in range(2)]

    assert [a == body for a in answers] == [True, True]
    assert accepted == [1]
