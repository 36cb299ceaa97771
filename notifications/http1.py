"""The push channel's HTTP: an httpx transport speaking HTTP/1.1 on keep-alive connections of its own.

httpx's own transport (httpcore over h11, its locks and cancel scopes from anyio) cost a dispatcher
two fifths of its time, under cProfile, for what the push channel needs of it: one small POST at a
time on each connection, answered by a small JSON body. This one does that much and no more:

- at most `connections` requests at once, each on a keep-alive connection of its own, opened when
  none is idle, over TLS for ``https://`` (FCM answers HTTP/1.1, as the SDK's synchronous calls use);
- each answer parsed by llhttp (httptools, in C) as it arrives, read whole, at most `MAX_ANSWER`
  bytes, and the connection given back at once, so an answer nobody closes holds nothing;
- a connection the server closed, or whose answer went wrong, is never used again;
- httpx's timeouts: `pool` for a free place, `connect` for TCP and TLS, `write` for the request to
  leave, and `read` for the whole answer.

Errors are httpx's, so callers (the SDK, its retry transport) sort them as they sort httpx's own.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

import httptools
import httpx

MAX_ANSWER = 1 << 20  # FCM answers in a few hundred bytes, and a proxy's error page in a few thousand
_DEFAULT_PORT = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request on it at a time; the parser calls its `on_*` methods."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.usable = True  # until either side closes it or an answer goes wrong
        self._request: httpx.Request | None = None
        self._answer: asyncio.Future[httpx.Response] | None = None
        self._drained: asyncio.Future[None] | None = None  # while the transport's write buffer is full
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._delimited = False  # the answer says where its body ends; otherwise the server's close does

    async def exchange(self, request: httpx.Request, write_s: float | None, read_s: float | None) -> httpx.Response:
        """Sends `request` and returns its answer, read whole; on any failure the connection is closed."""
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        self._request, self._answer, self._status = request, loop.create_future(), 0
        try:
            transport.write(_head(request) + await request.aread())
            if self._drained is not None:
                try:
                    async with asyncio.timeout(write_s):
                        await self._drained
                except TimeoutError:
                    raise httpx.WriteTimeout(f"the server took nothing within {write_s} s", request=request) from None
            try:
                async with asyncio.timeout(read_s):
                    return await self._answer
            except TimeoutError:
                raise httpx.ReadTimeout(f"no whole answer within {read_s} s", request=request) from None
        except BaseException:
            self.close()
            raise
        finally:
            self._request = self._answer = None

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None:
            self._fail(httpx.RemoteProtocolError("the server sent bytes before a request"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:  # raised by a method below, or by httptools there
            cause = error.__context__
            self._fail(
                cause
                if isinstance(cause, httpx.HTTPError)
                else httpx.RemoteProtocolError(f"a malformed answer: {cause or error}", request=self._request)
            )
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._fail(httpx.RemoteProtocolError(f"a malformed answer: {error}", request=self._request))

    def eof_received(self) -> bool:
        if self._answer is not None and self._status >= 200 and not self._delimited:
            self._answered(keep_alive=False)  # the body of an answer without a length ends with the connection
        self._fail(httpx.RemoteProtocolError("the server closed the connection before answering"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            httpx.ReadError(f"the connection was lost: {exc}", request=self._request)
            if exc is not None
            else httpx.RemoteProtocolError("the server closed the connection before answering", request=self._request)
        )
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(httpx.WriteError("the connection was lost", request=self._request))

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        if self._answer is None or self._answer.done():  # a second answer to one request
            raise httpx.RemoteProtocolError("the server sent bytes nobody asked for", request=self._request)
        self._status, self._headers, self._body, self._size, self._delimited = 0, [], [], 0, False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._delimited = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_ANSWER:
            raise httpx.RemoteProtocolError(f"an answer longer than {MAX_ANSWER} bytes", request=self._request)
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status >= 200:  # a 1xx is news that the answer is coming, not the answer
            self._answered(keep_alive=self._parser.should_keep_alive())

    # --

    def _answered(self, *, keep_alive: bool) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        if not keep_alive:
            self.close()
        try:  # httpx decodes a gzip or deflate body here
            response = httpx.Response(
                self._status,
                headers=self._headers,
                content=b"".join(self._body),
                request=self._request,
                extensions={"http_version": b"HTTP/" + self._parser.get_http_version().encode()},
            )
        except httpx.DecodingError as error:  # a proxy's corruption, say: the send may be tried again
            self._fail(httpx.RemoteProtocolError(f"an answer that cannot be decoded: {error}", request=self._request))
            return
        answer.set_result(response)

    def _fail(self, error: httpx.HTTPError) -> None:
        self.close()
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(error)


def _head(request: httpx.Request) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if name.lower() == b"transfer-encoding":  # the body goes as read, unframed
            raise httpx.UnsupportedProtocol("the push channel sends bodies of a known length", request=request)
        lines.append(b"%s: %s" % (name, value))
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Http1Transport(httpx.AsyncBaseTransport):
    """At most `connections` requests at once, each on a keep-alive connection of its own."""

    def __init__(self, connections: int, tls: ssl.SSLContext) -> None:
        self._free = asyncio.Semaphore(connections)  # so no origin ever has more connections than this
        self._closed = False
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls = tls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":  # its answer's length describes a body that never comes
            raise httpx.UnsupportedProtocol("HEAD is not sent by the push channel", request=request)
        url = request.url
        if url.scheme not in _DEFAULT_PORT:
            raise httpx.UnsupportedProtocol(f"no {url.scheme!r} in the push channel", request=request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        if self._free.locked():
            await self._wait_free(timeouts.get("pool"), request)
        else:
            await self._free.acquire()
        try:
            origin = (url.scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORT[url.scheme])
            connection = self._take_idle(origin) or await self._connect(origin, timeouts.get("connect"), request)
            response = await connection.exchange(request, timeouts.get("write"), timeouts.get("read"))
            self._put_idle(origin, connection)
            return response
        finally:
            self._free.release()

    async def aclose(self) -> None:
        self._closed = True  # a request still out closes its connection when it ends
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _wait_free(self, seconds: float | None, request: httpx.Request) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._free.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no connection free within {seconds} s", request=request) from None

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
        return None

    def _put_idle(self, origin: Origin, connection: _Connection) -> None:
        if self._closed:
            connection.close()
        elif connection.usable:
            self._idle.setdefault(origin, []).append(connection)

    async def _connect(self, origin: Origin, seconds: float | None, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        tls = self._tls if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {seconds} s", request=request) from None
        except OSError as error:  # ssl.SSLError included: a certificate refused, a protocol not agreed
            raise httpx.ConnectError(f"no connection to {host}:{port}: {error}", request=request) from error
        return connection


def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CAs), offering only HTTP/1.1 by ALPN."""
    context = httpx.create_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
