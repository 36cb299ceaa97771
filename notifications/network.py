"""The push channel's sockets: an httpcore network backend on asyncio's own transports.

httpcore reaches asyncio through anyio, which for every socket operation opens a cancel scope with
a timer, maps exceptions through a context manager and yields once more on each send; and before it
reuses an idle connection it polls the socket to see whether the server has closed it. Here a
protocol keeps what arrives in a buffer: a read returns at once when bytes are waiting and
otherwise waits on one future, and whether an idle connection has been closed is known without a
system call.

Plugged into httpx's own transport (`http_transport`), which takes no backend argument, so the rest
of the stack (httpcore's pool, HTTP/1.1 and HTTP/2, httpx's mapping of errors) is unchanged.
"""

# ruff: noqa: ASYNC109  (httpcore's interface passes each timeout as an argument)
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore
import httpx

# Reading from the socket pauses once this much is buffered unread, and resumes below the low mark:
# an answer bigger than a reader takes at once cannot fill the memory.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# httpcore's names for what it asks of a stream, and asyncio's for the same.
_EXTRA_INFO = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One TCP connection's state: what has arrived and not been read, and whether writing must wait."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # the TLS transport once `start_tls` has run
        self.received = bytearray()
        self.ended = False  # the server closed its side, or the connection was lost
        self.error: Exception | None = None  # why the connection was lost, when not a clean close
        self._reading_paused = False
        self._arrived: asyncio.Future[None] | None = None  # a reader waiting for bytes
        self._drained: asyncio.Future[None] | None = None  # set while the transport's write buffer is full

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport: HTTP has no use for a half-closed connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()
        self._release_writer(exc or ConnectionResetError("the connection is closed"))

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._release_writer(None)

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.received[:max_bytes])
        del self.received[:max_bytes]
        if self._reading_paused and len(self.received) < _LOW_WATER and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        return data

    async def arrival(self, within_s: float | None) -> None:
        """Returns once bytes have arrived or the connection has ended; TimeoutError after `within_s` seconds."""
        loop = asyncio.get_running_loop()
        self._arrived = waiter = loop.create_future()
        timer = None if within_s is None else loop.call_later(within_s, _expire, waiter)
        try:
            await waiter
        finally:
            self._arrived = None
            if timer is not None:
                timer.cancel()

    async def drained(self, within_s: float | None) -> None:
        """Returns once the transport takes more writes; TimeoutError after `within_s` seconds."""
        waiter = self._drained
        if waiter is None:
            return
        # httpcore writes to a connection one request at a time, so no other writer shares this waiter.
        timer = None if within_s is None else asyncio.get_running_loop().call_later(within_s, _expire, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    def _release_writer(self, error: Exception | None) -> None:
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, connection: _Connection) -> None:
        assert connection.transport is not None
        self._connection = connection
        self._transport = connection.transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self._connection
        if not connection.received and not connection.ended:
            try:
                await connection.arrival(timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no answer within {timeout} s") from None
        if connection.received:
            return connection.take(max_bytes)
        if connection.error is not None:
            raise httpcore.ReadError(str(connection.error)) from connection.error
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        try:
            await self._connection.drained(timeout)
        except TimeoutError:
            raise httpcore.WriteTimeout(f"the server took nothing for {timeout} s") from None
        except OSError as error:
            raise httpcore.WriteError(str(error)) from error

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._connection, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout} s") from None
        except OSError as error:  # ssl.SSLError included: a certificate refused, a protocol not agreed
            self._transport.close()
            raise httpcore.ConnectError(str(error)) from error
        if tls is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._connection.transport = tls
        return _Stream(self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # asked of an idle connection: anything there means the server closed it
            return bool(self._connection.received) or self._connection.ended
        name = _EXTRA_INFO.get(info)
        return None if name is None else self._transport.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=None if local_address is None else (local_address, 0)
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s") from None
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from error
        for option in socket_options or ():  # asyncio sets TCP_NODELAY itself
            transport.get_extra_info("socket").setsockopt(*option)
        return _Stream(connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BACKEND = AsyncioBackend()


def http_transport(**options: Any) -> httpx.AsyncHTTPTransport:
    """httpx's transport, with `options` as httpx takes them, its sockets on `AsyncioBackend`."""
    transport = httpx.AsyncHTTPTransport(**options)
    transport._pool._network_backend = _BACKEND
    return transport
